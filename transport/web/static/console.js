// RM console, served at /.
//
// One page, two states: the login form, then the console (conversation list
// on the left, the open conversation on the right; on a narrow screen one of
// the two at a time). It talks to the server through the RM API and the live
// socket only:
//
//   POST /api/login                          -> token, kept in sessionStorage
//   GET  /api/conversations?limit=N          the list, newest activity first
//   GET  /api/conversations/{id}/events      ?before_seq= (latest and older
//                                            pages) or ?after_seq= (a gap)
//   POST /api/conversations/{id}/messages    text or template, client_msg_id
//   POST /api/conversations/{id}/assign      supervisors
//   GET  /api/templates, GET /api/rms        template picker, assign control
//   POST /api/calls, POST /api/video-calls   call and video buttons
//   GET  /api/messages/{id}/media/{n}        attachments (?token=)
//   GET  /ws?token=                          live socket
//
// A 401 from any of them ends the session and shows the login form.
//
// Ordering and duplicates. Every conversation event has a seq (+1 per event
// per conversation) and a cursor (the socket's position). The page keeps, per
// conversation, last_seq: every event up to it is reflected in the list and,
// for the open conversation, in the thread. Everything that changes that
// state runs one task at a time on one queue (`enqueue`): socket frames,
// list refreshes, opening a conversation and filling gaps. A frame with seq
// <= last_seq was seen and is dropped; seq == last_seq + 1 is applied; a
// larger seq means events were missed: for the open conversation they are
// fetched with after_seq before the frame is applied, for the others the
// list is refreshed. A frame of a conversation the page does not know
// triggers a list refresh first (a new conversation, or one just assigned).
// Message statuses only move up (queued < accepted < sent < failed <
// delivered < read, as on the server), so a status may arrive before the
// message it is about (older history loads later) and is kept until then.
//
// Sending. A send shows at once as a pending message with its own
// client_msg_id (crypto.randomUUID). The 202 answer and the socket's message
// frame both carry the client_msg_id; whichever comes first turns the
// pending message into the real one, so it never shows twice. A send that
// failed before the server answered keeps its client_msg_id for Retry (the
// server stores a client_msg_id once); a message the provider failed is
// retried as a new message with a new client_msg_id.
//
// Socket. On open the page sends {"type":"resume","cursor"} with the last
// cursor seen (kept in sessionStorage), or a ping when it has none; the
// server then replays what came after the cursor before live events. Any
// close (1013 from a slow client or an operator, a network drop, a server
// restart) reconnects with exponential backoff and jitter; a ping every 25 s
// that gets no answer within 10 s counts as a drop. #conn shows Connected,
// Reconnecting… or Offline (data-state connected, reconnecting, offline).
//
// window.urvaConsole = {state: "login"|"ready", rm, connection,
// openConversationId, cursor} is kept current for automation.
'use strict';

(() => {
  const byId = (id) => document.getElementById(id);
  const el = {
    app: byId('app'),
    login: byId('login'),
    loginForm: byId('login-form'),
    username: byId('username'),
    password: byId('password'),
    loginError: byId('login-error'),
    loginButton: byId('login-button'),
    console: byId('console'),
    me: byId('me'),
    conn: byId('conn'),
    logout: byId('logout'),
    filter: byId('filter'),
    filterAll: byId('filter-all'),
    filterUnassigned: byId('filter-unassigned'),
    conversations: byId('conversations'),
    conversationsEmpty: byId('conversations-empty'),
    noThread: byId('no-thread'),
    thread: byId('thread'),
    back: byId('back'),
    threadTitle: byId('thread-title'),
    threadSub: byId('thread-sub'),
    callButton: byId('call-button'),
    videoButton: byId('video-button'),
    assign: byId('assign'),
    assignSelect: byId('assign-select'),
    assignButton: byId('assign-button'),
    history: byId('history'),
    loadOlder: byId('load-older'),
    historyStart: byId('history-start'),
    timeline: byId('timeline'),
    historyStatus: byId('history-status'),
    composerForm: byId('composer-form'),
    composer: byId('composer'),
    send: byId('send'),
    templateBox: byId('template-box'),
    templateSelect: byId('template-select'),
    templateParams: byId('template-params'),
    templatePreview: byId('template-preview'),
    templateError: byId('template-error'),
    templateSend: byId('template-send'),
    optedOut: byId('opted-out'),
    noSend: byId('no-send'),
    toasts: byId('toasts'),
  };

  // The automation view of the page.
  const pub = {
    state: 'login',
    rm: null,
    connection: 'offline',
    openConversationId: null,
    cursor: '',
  };
  window.urvaConsole = pub;

  const KEY_TOKEN = 'urva-console-token';
  const KEY_RM = 'urva-console-rm';
  const KEY_CURSOR = 'urva-console-cursor';

  const LIST_LIMIT = 200;
  const PAGE = 50; // events per history page
  const GAP_PAGE = 1000; // the server's largest page
  const REQUEST_TIMEOUT_MS = 20000;
  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 15000;
  const STABLE_MS = 10000; // a socket open this long resets the backoff
  const PING_EVERY_MS = 25000;
  const PONG_WAIT_MS = 10000;
  const REFRESH_EVERY_MS = 60000;
  const WINDOW_MS = 24 * 60 * 60 * 1000; // WhatsApp's customer service window
  const UNKNOWN_HOLD_MS = 30000; // how long a conversation not in the list is not looked up again

  const CONN_TEXT = { connected: 'Connected', reconnecting: 'Reconnecting…', offline: 'Offline' };
  const CHANNEL = { whatsapp: 'WhatsApp', sms: 'SMS', voice: 'Voice' };

  // Message statuses, ranked like the server ranks them: never downwards.
  const STATUS_RANK = { queued: 1, accepted: 2, sent: 3, failed: 4, delivered: 5, read: 6, played: 6, received: 7 };
  // What an outbound status shows as (data-status of .status).
  const STATUS_SHOWN = { queued: 'queued', accepted: 'sent', sent: 'sent', delivered: 'delivered', read: 'read', played: 'read', failed: 'failed' };
  const STATUS_LABEL = { queued: 'Queued', sent: 'Sent', delivered: 'Delivered', read: 'Read', failed: 'Failed' };
  const STATUS_GLYPH = { queued: '', sent: '\u2713', delivered: '\u2713\u2713', read: '\u2713\u2713', failed: '!' };

  const CALL_RANK = { requested: 1, dialling: 2, contact_answered: 3, connected: 4, completed: 5, no_answer: 5, busy: 5, failed: 5, canceled: 5 };
  const VIDEO_RANK = { created: 1, active: 2, ended: 3 };

  // ---- session state ----

  let token = '';
  let me = null; // {id, username, name, role}
  let gen = 0; // bumped at login and logout: tasks of an old session stop
  const convs = new Map(); // conversation id -> conversation (the list's objects, kept current)
  const items = new Map(); // conversation id -> li.conversation
  const unknown = new Map(); // conversation id -> time it was last looked up and not found
  const outbox = new Map(); // conversation id -> Map(client_msg_id -> send)
  const drafts = new Map(); // conversation id -> composer text
  const rms = new Map(); // rm id -> {id, username, name, role, online}
  // The RM a supervisor picked in the assign list and has not assigned yet:
  // {conv, rm}. A re-render of the thread (a live event, the RM list) keeps
  // it instead of going back to the current assignee.
  let assignChoice = null;
  let templates = null; // [{name, language, body, params}] once loaded
  let templatesLoading = null;
  let filter = 'all';
  let thread = null; // the open conversation, see newThread
  let inbox = Promise.resolve();
  let refreshTimer = 0;
  let refreshEvery = 0;
  let windowTimer = 0;
  let callTicker = 0;
  let listFetchStarted = 0;
  let listLoaded = false;

  const sock = {
    ws: null,
    attempt: 0,
    timer: 0,
    stableTimer: 0,
    pingTimer: 0,
    pongTimer: 0,
    opened: false,
    openedAt: 0,
  };

  // ---- small helpers ----

  function h(tag, props, ...kids) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') e.className = v;
        else if (k === 'text') e.textContent = v;
        else if (k === 'dataset') {
          for (const [dk, dv] of Object.entries(v)) {
            if (dv !== undefined && dv !== null) e.dataset[dk] = String(dv);
          }
        } else if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const kid of kids.flat()) {
      if (kid === undefined || kid === null || kid === false) continue;
      e.append(kid instanceof Node ? kid : String(kid));
    }
    return e;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  function storageGet(key) {
    try {
      return sessionStorage.getItem(key);
    } catch {
      return null;
    }
  }

  function storageSet(key, value) {
    try {
      if (value === null || value === undefined) sessionStorage.removeItem(key);
      else sessionStorage.setItem(key, value);
    } catch {
      // Storage blocked: the page works, a reload asks to sign in again.
    }
  }

  function newId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
    return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
  }

  function enqueue(fn, what) {
    const run = inbox.then(fn).catch((e) => console.error('console:', what || 'task', e));
    inbox = run;
    return run;
  }

  function backoff(attempt, min = RECONNECT_MIN_MS) {
    const base = Math.min(RECONNECT_MAX_MS, min * 2 ** Math.min(attempt, 10));
    // Equal jitter: half fixed, half random, so clients do not come back in step.
    return Math.round(base / 2 + Math.random() * (base / 2));
  }

  function parseTime(s) {
    const t = s ? Date.parse(s) : NaN;
    return Number.isFinite(t) ? t : 0;
  }

  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dayFmt = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
  const yearFmt = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', year: 'numeric' });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

  function sameDay(a, b) {
    return a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();
  }

  // shortWhen: the time today, the date otherwise (the list).
  function shortWhen(t) {
    if (!t) return '';
    const d = new Date(t);
    const now = new Date();
    if (sameDay(d, now)) return timeFmt.format(d);
    if (d.getFullYear() === now.getFullYear()) return dayFmt.format(d);
    return yearFmt.format(d);
  }

  // msgWhen: the time, with the date when not today (messages).
  function msgWhen(t) {
    if (!t) return '';
    const d = new Date(t);
    if (sameDay(d, new Date())) return timeFmt.format(d);
    return `${shortWhen(t)}, ${timeFmt.format(d)}`;
  }

  function timeEl(iso, cls, fmt) {
    const t = parseTime(iso);
    if (!t) return null;
    return h('time', { class: cls, datetime: new Date(t).toISOString(), title: fullFmt.format(new Date(t)), text: fmt(t) });
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(Number(seconds) || 0));
    const hh = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const parts = [];
    if (hh > 0) parts.push(`${hh}\u00a0h`);
    if (hh > 0 || m > 0) parts.push(`${m}\u00a0min`);
    parts.push(`${s % 60}\u00a0s`);
    return parts.join(' ');
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const m = Math.floor(s / 60);
    return `${m}:${String(s % 60).padStart(2, '0')}`;
  }

  // linkify renders text with its http(s) links as links opening a new tab.
  function linkify(text) {
    const frag = document.createDocumentFragment();
    const re = /\bhttps?:\/\/[^\s<>"']+/gi;
    let last = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      let url = m[0];
      // Punctuation that ends a sentence is not part of the link.
      const trail = /[.,;:!?)\]}]+$/.exec(url);
      if (trail) url = url.slice(0, -trail[0].length);
      if (m.index > last) frag.append(text.slice(last, m.index));
      frag.append(h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', text: url }));
      last = m.index + url.length;
      re.lastIndex = last;
    }
    if (last < text.length) frag.append(text.slice(last));
    return frag;
  }

  function errorText(err) {
    if (!err) return '';
    if (typeof err === 'string') return err;
    if (typeof err === 'object') {
      const parts = [];
      const main = err.message || err.title || err.details || '';
      if (main) parts.push(main);
      if (err.title && err.message && err.title !== err.message) parts.unshift(err.title);
      if (err.code !== undefined && err.code !== null && err.code !== '') parts.push(`(code ${err.code})`);
      return parts.join(' ') || 'Unknown error';
    }
    return String(err);
  }

  function contactLabel(conv) {
    const c = (conv && conv.contact) || {};
    return c.name || c.phone || `Conversation ${conv ? conv.id : ''}`;
  }

  function rmLabel(id) {
    if (!id) return 'nobody';
    if (me && id === me.id) return 'you';
    const r = rms.get(id);
    if (r) return r.name || r.username;
    return `RM #${id}`;
  }

  const isSupervisor = () => !!me && me.role === 'supervisor';

  // ---- the API ----

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function apiCall(method, path, body, opts = {}) {
    const used = token;
    const headers = {};
    if (!opts.anonymous) headers.Authorization = `Bearer ${used}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), opts.timeout || REQUEST_TIMEOUT_MS);
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'same-origin',
        signal: ctrl.signal,
      });
    } catch {
      clearTimeout(timer);
      throw new ApiError(0, 'Cannot reach the server. Check your connection and try again.');
    }
    let data = null;
    try {
      data = await res.json();
    } catch {
      // Not JSON: reported by status below.
    } finally {
      clearTimeout(timer);
    }
    if (res.status === 401 && !opts.anonymous) {
      if (used && used === token) endSession('Your session has ended. Sign in again.');
      throw new ApiError(401, 'unauthorized');
    }
    if (!res.ok) {
      const e = data && data.error;
      const msg = (e && typeof e === 'object' ? e.message : e) || '';
      throw new ApiError(res.status, (typeof msg === 'string' && msg) || `The server answered ${res.status}.`);
    }
    return data || {};
  }

  async function fetchEvents(id, q) {
    const params = new URLSearchParams();
    if (q.before !== undefined) params.set('before_seq', String(q.before));
    if (q.after !== undefined) params.set('after_seq', String(q.after));
    params.set('limit', String(q.limit));
    const data = await apiCall('GET', `/api/conversations/${encodeURIComponent(id)}/events?${params}`);
    const list = Array.isArray(data.events) ? data.events : [];
    return list.filter((f) => f && typeof f === 'object' && Number.isFinite(Number(f.seq)))
      .map((f) => ({ ...f, seq: Number(f.seq) }))
      .sort((a, b) => a.seq - b.seq);
  }

  function mediaURL(messageId, n) {
    return `/api/messages/${encodeURIComponent(messageId)}/media/${n}?token=${encodeURIComponent(token)}`;
  }

  // ---- login and logout ----

  function showLogin(message) {
    pub.state = 'login';
    el.app.dataset.state = 'login';
    el.console.hidden = true;
    el.login.hidden = false;
    setLoginError(message || '');
    el.loginButton.disabled = false;
    (el.username.value ? el.password : el.username).focus();
  }

  function setLoginError(text) {
    el.loginError.textContent = text;
    el.loginError.hidden = !text;
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const username = el.username.value.trim();
    const password = el.password.value;
    if (!username || !password) {
      setLoginError('Enter your username and password.');
      (username ? el.password : el.username).focus();
      return;
    }
    setLoginError('');
    el.loginButton.disabled = true;
    el.loginButton.textContent = 'Signing in…';
    try {
      const data = await apiCall('POST', '/api/login', { username, password }, { anonymous: true });
      if (!data.token || !data.rm) throw new ApiError(500, 'The server sent an unexpected answer. Try again.');
      el.password.value = '';
      token = data.token;
      me = normalizeRM(data.rm);
      storageSet(KEY_TOKEN, token);
      storageSet(KEY_RM, JSON.stringify(me));
      storageSet(KEY_CURSOR, null);
      startSession();
    } catch (e) {
      if (e.status === 401 || e.status === 400) setLoginError('Wrong username or password');
      else setLoginError(e.message || 'Sign-in failed. Try again.');
      el.password.select();
      el.password.focus();
    } finally {
      el.loginButton.disabled = false;
      el.loginButton.textContent = 'Sign in';
    }
  }

  function normalizeRM(rm) {
    return {
      id: Number(rm.id),
      username: String(rm.username || ''),
      name: String(rm.name || ''),
      role: rm.role === 'supervisor' ? 'supervisor' : 'rm',
    };
  }

  function resetState() {
    convs.clear();
    items.clear();
    unknown.clear();
    outbox.clear();
    drafts.clear();
    rms.clear();
    templates = null;
    templatesLoading = null;
    thread = null;
    filter = 'all';
    listFetchStarted = 0;
    listLoaded = false;
    clearTimeout(refreshTimer);
    clearInterval(refreshEvery);
    clearTimeout(windowTimer);
    clearInterval(callTicker);
    refreshTimer = 0;
    refreshEvery = 0;
    windowTimer = 0;
    callTicker = 0;
    el.conversations.replaceChildren();
    el.timeline.replaceChildren();
    el.toasts.replaceChildren();
    el.composer.value = '';
    el.filterAll.checked = true;
    el.thread.hidden = true;
    el.thread.removeAttribute('data-id');
    el.noThread.hidden = false;
    el.app.dataset.view = 'list';
    pub.openConversationId = null;
  }

  function startSession() {
    gen++;
    const g = gen;
    resetState();
    pub.rm = { ...me };
    pub.state = 'login';
    let saved = null;
    try {
      saved = JSON.parse(storageGet(KEY_CURSOR) || 'null');
    } catch {
      saved = null;
    }
    pub.cursor = saved && saved.rm === me.id && typeof saved.cursor === 'string' ? saved.cursor : '';

    el.login.hidden = true;
    el.console.hidden = false;
    el.app.dataset.role = me.role;
    el.filter.hidden = !isSupervisor();
    renderMe();
    renderList();

    setConn(navigator.onLine === false ? 'offline' : 'reconnecting');
    sock.attempt = 0;
    connect();

    enqueue(() => refreshList(g, true), 'load conversations');
    if (isSupervisor()) loadRMs();
    loadTemplates();
    refreshEvery = setInterval(() => scheduleRefresh(0), REFRESH_EVERY_MS);
  }

  function renderMe() {
    const role = me.role === 'supervisor' ? 'Supervisor' : 'RM';
    el.me.replaceChildren(
      h('span', { class: 'me-name', text: me.name || me.username }),
      h('span', { class: 'me-role', text: role }),
    );
  }

  // endSession logs out: the token, the cursor and everything shown go.
  function endSession(message) {
    gen++;
    closeSocket();
    token = '';
    me = null;
    pub.rm = null;
    pub.cursor = '';
    storageSet(KEY_TOKEN, null);
    storageSet(KEY_RM, null);
    storageSet(KEY_CURSOR, null);
    resetState();
    setConn('offline');
    showLogin(message);
  }

  // ---- connection state and the socket ----

  function setConn(state) {
    pub.connection = state;
    el.conn.dataset.state = state;
    el.conn.textContent = CONN_TEXT[state];
  }

  function setCursor(c) {
    if (typeof c !== 'string' || !c || !me) return;
    pub.cursor = c;
    storageSet(KEY_CURSOR, JSON.stringify({ rm: me.id, cursor: c }));
  }

  function connect() {
    clearTimeout(sock.timer);
    sock.timer = 0;
    if (!token || sock.ws) return;
    const g = gen;
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let s;
    try {
      s = new WebSocket(`${scheme}//${location.host}/ws?token=${encodeURIComponent(token)}`);
    } catch (e) {
      console.warn('console: socket', e);
      scheduleReconnect(0, false);
      return;
    }
    sock.ws = s;
    sock.opened = false;
    s.onopen = () => {
      if (s !== sock.ws) return;
      sock.opened = true;
      sock.openedAt = Date.now();
      // resume must be the first frame; without a cursor a ping ends the
      // server's wait for it at once.
      const first = pub.cursor ? { type: 'resume', cursor: pub.cursor } : { type: 'ping' };
      s.send(JSON.stringify(first));
      setConn('connected');
      clearTimeout(sock.stableTimer);
      sock.stableTimer = setTimeout(() => { sock.attempt = 0; }, STABLE_MS);
      startPing(s);
      // Without a cursor nothing is replayed: what happened before this
      // socket was open comes from a list fetched after it opened (and a
      // gap fetch for the open conversation).
      if (!pub.cursor) {
        const openedAt = sock.openedAt;
        enqueue(() => (g === gen && listFetchStarted < openedAt ? refreshList(g, false) : null), 'refresh after connect');
      }
      // Invitations are not replayed by resume: ask for the open ones.
      loadInvites(g);
    };
    s.onmessage = (ev) => {
      if (s !== sock.ws) return;
      alive();
      let f;
      try {
        f = JSON.parse(ev.data);
      } catch {
        console.warn('console: ignoring a frame that is not JSON');
        return;
      }
      onFrame(f, g);
    };
    s.onclose = (ev) => {
      if (s !== sock.ws) return;
      const wasOpen = sock.opened;
      dropSocket();
      if (g !== gen || !token) return;
      if (ev.code === 1013 || ev.code === 1001) console.info('console: socket closed by the server:', ev.code, ev.reason);
      scheduleReconnect(ev.code, wasOpen);
    };
    s.onerror = () => {
      // A close event follows.
    };
  }

  function dropSocket() {
    const s = sock.ws;
    sock.ws = null;
    sock.opened = false;
    clearTimeout(sock.stableTimer);
    clearInterval(sock.pingTimer);
    clearTimeout(sock.pongTimer);
    sock.pingTimer = 0;
    sock.pongTimer = 0;
    if (s) {
      s.onopen = null;
      s.onmessage = null;
      s.onclose = null;
      s.onerror = null;
      if (s.readyState === WebSocket.OPEN || s.readyState === WebSocket.CONNECTING) {
        try {
          s.close(1000);
        } catch {
          // Already closing.
        }
      }
    }
  }

  function closeSocket() {
    clearTimeout(sock.timer);
    sock.timer = 0;
    dropSocket();
  }

  function scheduleReconnect(code, wasOpen) {
    clearTimeout(sock.timer);
    setConn(navigator.onLine === false ? 'offline' : 'reconnecting');
    // "Try again later" asks for a pause even after a good connection.
    const delay = backoff(sock.attempt, code === 1013 ? 1000 : RECONNECT_MIN_MS);
    sock.attempt++;
    const g = gen;
    sock.timer = setTimeout(async () => {
      sock.timer = 0;
      if (g !== gen || !token) return;
      // A socket that keeps failing before it opens may have an expired
      // token (the upgrade answers 401, which a page cannot read): ask the
      // API, which ends the session on 401.
      if (!wasOpen && sock.attempt >= 2 && navigator.onLine !== false) {
        try {
          await apiCall('GET', '/api/conversations?limit=1');
        } catch {
          // 401 already ended the session; anything else: try the socket.
        }
        if (g !== gen || !token) return;
      }
      connect();
    }, delay);
  }

  function startPing(s) {
    clearInterval(sock.pingTimer);
    sock.pingTimer = setInterval(() => {
      if (s !== sock.ws || s.readyState !== WebSocket.OPEN) return;
      try {
        s.send('{"type":"ping"}');
      } catch {
        return;
      }
      clearTimeout(sock.pongTimer);
      sock.pongTimer = setTimeout(() => {
        if (s !== sock.ws) return;
        console.warn('console: no answer to ping; reconnecting');
        const g = gen;
        dropSocket();
        if (g === gen && token) scheduleReconnect(0, true);
      }, PONG_WAIT_MS);
    }, PING_EVERY_MS);
  }

  function alive() {
    clearTimeout(sock.pongTimer);
    sock.pongTimer = 0;
  }

  function reconnectNow() {
    if (!token || sock.ws) return;
    sock.attempt = 0;
    connect();
  }

  function onFrame(f, g) {
    if (!f || typeof f !== 'object' || g !== gen) return;
    switch (f.type) {
      case 'pong':
        return;
      case 'error':
        console.warn('console: the server refused a frame:', f.error);
        if (f.error === 'bad cursor') {
          // Nothing is replayed after a cursor the server cannot read:
          // start over from a fresh list.
          pub.cursor = '';
          storageSet(KEY_CURSOR, null);
          scheduleRefresh(0);
        }
        return;
      case 'video_invite':
        videoInvite(f.video_call || {});
        return;
      default:
        break;
    }
    // Any frame of a conversation is an event with a seq, whatever its
    // type: unknown types still advance the seq.
    if (f.conversation_id !== undefined && f.seq !== undefined && Number.isFinite(Number(f.seq))) {
      const frame = { ...f, seq: Number(f.seq) };
      enqueue(() => (g === gen ? liveEvent(frame, g) : null), `event ${f.type}`);
    }
  }

  // liveEvent applies one socket event (on the queue).
  async function liveEvent(f, g) {
    const id = Number(f.conversation_id);
    let conv = convs.get(id);
    if (!conv) {
      const seen = unknown.get(id);
      if (!seen || Date.now() - seen > UNKNOWN_HOLD_MS) {
        await refreshList(g, false);
        if (g !== gen) return;
        conv = convs.get(id);
        if (!conv) unknown.set(id, Date.now());
      }
    }
    if (conv && convs.get(id) === conv) {
      if (f.seq > conv.last_seq + 1) {
        if (isOpen(id) && thread.ready) {
          const ok = await fillGap(conv, f.seq - 1, g);
          if (g !== gen) return;
          if (!ok) reloadThread();
        } else {
          scheduleRefresh(500);
        }
      }
      if (f.seq > conv.last_seq && convs.get(id) === conv) applyEvent(conv, f);
    }
    setCursor(f.cursor);
  }

  // fillGap applies the events after conv.last_seq up to target, fetched
  // from the API; it reports whether it got them all.
  async function fillGap(conv, target, g) {
    while (conv.last_seq < target) {
      let evs;
      try {
        evs = await fetchEvents(conv.id, { after: conv.last_seq, limit: Math.min(GAP_PAGE, target - conv.last_seq) });
      } catch (e) {
        console.warn('console: gap fetch', e);
        return false;
      }
      if (g !== gen || convs.get(conv.id) !== conv) return false;
      let progressed = false;
      for (const f of evs) {
        if (f.seq <= conv.last_seq) continue;
        if (f.seq !== conv.last_seq + 1 || f.seq > target) break;
        applyEvent(conv, f);
        progressed = true;
      }
      if (!progressed) return conv.last_seq >= target;
    }
    return true;
  }

  // ---- the conversation list ----

  function scheduleRefresh(delay) {
    if (refreshTimer || !token) return;
    const g = gen;
    refreshTimer = setTimeout(() => {
      refreshTimer = 0;
      if (g === gen) enqueue(() => (g === gen ? refreshList(g, false) : null), 'refresh conversations');
    }, delay || 0);
  }

  // refreshList loads the list and merges it (on the queue). The first load
  // retries until it succeeds; later ones give up quietly.
  async function refreshList(g, initial) {
    let data = null;
    for (let attempt = 0; ; attempt++) {
      listFetchStarted = Date.now();
      try {
        data = await apiCall('GET', `/api/conversations?limit=${LIST_LIMIT}`);
        break;
      } catch (e) {
        if (g !== gen || e.status === 401) return;
        if (!initial) {
          console.warn('console: list refresh', e);
          return;
        }
        if (attempt === 0) toast(`Could not load the conversations: ${e.message} Retrying…`, { kind: 'error', key: 'list-error' });
        await sleep(backoff(attempt, 1000));
        if (g !== gen) return;
      }
    }
    if (g !== gen) return;
    dismissToast('list-error');
    const list = Array.isArray(data.conversations) ? data.conversations : [];
    const seen = new Set();
    for (const raw of list) {
      const c = normalizeConv(raw);
      if (!c) continue;
      seen.add(c.id);
      unknown.delete(c.id);
      await mergeConv(c, g);
      if (g !== gen) return;
    }
    // A complete list also tells which conversations went away (assigned
    // to another RM).
    if (list.length < LIST_LIMIT) {
      for (const id of [...convs.keys()]) {
        if (!seen.has(id)) removeConv(id, 'This conversation is no longer assigned to you.');
      }
    }
    listLoaded = true;
    renderList(true);
    if (thread && convs.has(thread.id)) {
      renderThreadHead();
      renderSendArea();
    }
    if (initial) {
      pub.state = 'ready';
      el.app.dataset.state = 'ready';
    }
  }

  function normalizeConv(c) {
    if (!c || typeof c !== 'object' || !Number.isFinite(Number(c.id))) return null;
    const contact = c.contact && typeof c.contact === 'object' ? c.contact : {};
    return {
      id: Number(c.id),
      channel: String(c.channel || ''),
      contact: { phone: String(contact.phone || ''), name: String(contact.name || '') },
      assigned_rm_id: c.assigned_rm_id ? Number(c.assigned_rm_id) : null,
      last_seq: Number(c.last_seq) || 0,
      last_message_at: c.last_message_at || null,
      unread_count: Number(c.unread_count) || 0,
      last_message: c.last_message && typeof c.last_message === 'object' ? c.last_message : null,
      window_expires_at: c.window_expires_at || null,
      sms_opted_out: !!c.sms_opted_out,
    };
  }

  async function mergeConv(c, g) {
    const cur = convs.get(c.id);
    if (!cur) {
      convs.set(c.id, c);
      return;
    }
    if (c.last_seq > cur.last_seq) {
      // The list knows events this page missed.
      if (isOpen(c.id) && thread.ready) {
        const ok = await fillGap(cur, c.last_seq, g);
        if (g !== gen) return;
        if (!ok) reloadThread();
      }
      Object.assign(cur, c);
    } else if (c.last_seq === cur.last_seq) {
      Object.assign(cur, c);
    } else {
      // This page is ahead of the list: keep what the events said, take
      // what events do not carry.
      cur.contact = c.contact.name || !cur.contact.name ? c.contact : cur.contact;
      cur.sms_opted_out = c.sms_opted_out;
      if (parseTime(c.window_expires_at) > parseTime(cur.window_expires_at)) cur.window_expires_at = c.window_expires_at;
    }
  }

  function removeConv(id, why) {
    if (!convs.has(id)) return;
    convs.delete(id);
    outbox.delete(id);
    drafts.delete(id);
    const li = items.get(id);
    items.delete(id);
    if (li) li.remove();
    if (isOpen(id)) {
      closeThread();
      if (why) toast(why, { kind: 'info' });
    }
  }

  function activity(c) {
    return parseTime(c.last_message_at);
  }

  function visible(c) {
    if (filter === 'unassigned') return !c.assigned_rm_id;
    return true;
  }

  // renderList shows the conversations that pass the filter, newest
  // activity first; refill also redraws the items already shown.
  function renderList(refill) {
    const list = [...convs.values()].filter(visible)
      .sort((a, b) => activity(b) - activity(a) || b.id - a.id);
    const keep = new Set(list.map((c) => c.id));
    const focused = document.activeElement;
    for (const [id, li] of items) {
      if (!keep.has(id)) {
        li.remove();
        items.delete(id);
      }
    }
    let ref = el.conversations.firstElementChild;
    for (const c of list) {
      let li = items.get(c.id);
      if (!li) {
        li = h('li', { class: 'conversation', role: 'option', dataset: { id: c.id } });
        items.set(c.id, li);
        fillItem(li, c);
      } else if (refill) {
        fillItem(li, c);
      }
      if (li !== ref) el.conversations.insertBefore(li, ref);
      else ref = ref.nextElementSibling;
    }
    if (focused && focused.classList && focused.classList.contains('conversation') && document.activeElement !== focused && focused.isConnected) {
      focused.focus({ preventScroll: true });
    }
    el.conversationsEmpty.hidden = list.length > 0;
    el.conversationsEmpty.textContent = !listLoaded ? 'Loading conversations…'
      : filter === 'unassigned' ? 'No unassigned conversations.' : 'No conversations yet.';
    rovingTabindex();
  }

  function rovingTabindex() {
    const lis = [...el.conversations.children];
    const active = lis.find((li) => li === document.activeElement) ||
      lis.find((li) => Number(li.dataset.id) === pub.openConversationId) || lis[0];
    for (const li of lis) li.tabIndex = li === active ? 0 : -1;
  }

  function updateItem(conv) {
    const li = items.get(conv.id);
    if (li) fillItem(li, conv);
  }

  function previewText(lm) {
    if (!lm) return 'No messages yet';
    const text = lm.text ? String(lm.text) : '';
    const type = String(lm.type || 'text');
    let s;
    switch (type) {
      case 'text': s = text; break;
      case 'image': s = text ? `Photo: ${text}` : 'Photo'; break;
      case 'video': s = text ? `Video: ${text}` : 'Video'; break;
      case 'sticker': s = 'Sticker'; break;
      case 'audio': s = 'Audio message'; break;
      case 'document': s = text ? `Document: ${text}` : 'Document'; break;
      case 'location': s = text ? `Location: ${text}` : 'Location'; break;
      case 'reaction': s = text ? `Reacted ${text}` : 'Removed a reaction'; break;
      case 'template': s = text ? `Template: ${text}` : 'Template'; break;
      case 'contacts': s = text || 'Contact card'; break;
      case 'interactive':
      case 'button':
      case 'system': s = text; break;
      default: s = 'Unsupported message';
    }
    return (lm.direction === 'out' ? 'You: ' : '') + s;
  }

  function fillItem(li, c) {
    const open = pub.openConversationId === c.id;
    li.classList.toggle('selected', open);
    li.classList.toggle('unassigned', !c.assigned_rm_id);
    li.setAttribute('aria-selected', String(open));
    li.dataset.channel = c.channel;
    const name = c.contact.name;
    const kids = [
      h('span', { class: 'conv-top' },
        h('span', { class: `badge channel ch-${c.channel || 'other'}`, text: CHANNEL[c.channel] || c.channel || '?' }),
        h('span', { class: 'conv-name', text: name || c.contact.phone || `Conversation ${c.id}` }),
        timeEl(c.last_message_at, 'conv-time', shortWhen)),
    ];
    const sub = [];
    if (name && c.contact.phone) sub.push(h('span', { class: 'conv-phone', text: c.contact.phone }));
    if (isSupervisor()) {
      sub.push(h('span', { class: 'conv-owner', text: c.assigned_rm_id ? rmLabel(c.assigned_rm_id) : 'Unassigned' }));
    }
    if (sub.length) kids.push(h('span', { class: 'conv-sub' }, sub));
    const lm = c.last_message;
    const bottom = [h('span', { class: 'conv-preview', text: previewText(lm) })];
    if (lm && lm.direction === 'out' && lm.status) {
      const shown = STATUS_SHOWN[lm.status];
      if (shown) bottom.push(h('span', { class: 'conv-status', dataset: { status: shown }, 'aria-label': STATUS_LABEL[shown], text: STATUS_GLYPH[shown] }));
    }
    if (c.unread_count > 0) {
      bottom.push(h('span', { class: 'unread', 'aria-label': `${c.unread_count} unread`, text: String(c.unread_count) }));
    }
    kids.push(h('span', { class: 'conv-bottom' }, bottom));
    li.replaceChildren(...kids);
  }

  function onListClick(ev) {
    const li = ev.target.closest('li.conversation');
    if (!li || !el.conversations.contains(li)) return;
    openConversation(Number(li.dataset.id), { fromKeyboard: false });
  }

  function onListKey(ev) {
    const li = ev.target.closest('li.conversation');
    if (!li) return;
    const lis = [...el.conversations.children];
    const i = lis.indexOf(li);
    let next = null;
    switch (isEnter(ev) ? 'Enter' : ev.key) {
      case 'Enter':
      case ' ':
        ev.preventDefault();
        openConversation(Number(li.dataset.id), { fromKeyboard: true });
        return;
      case 'ArrowDown': next = lis[i + 1]; break;
      case 'ArrowUp': next = lis[i - 1]; break;
      case 'Home': next = lis[0]; break;
      case 'End': next = lis[lis.length - 1]; break;
      default: return;
    }
    ev.preventDefault();
    if (next) {
      for (const x of lis) x.tabIndex = x === next ? 0 : -1;
      next.focus();
    }
  }

  function onFilter() {
    filter = el.filterUnassigned.checked ? 'unassigned' : 'all';
    renderList();
  }

  // ---- applying events ----

  function isOpen(id) {
    return !!thread && thread.id === id;
  }

  // applyEvent applies the next event of conv (seq == last_seq + 1) to the
  // list and, when it is open, the thread.
  function applyEvent(conv, f) {
    conv.last_seq = f.seq;
    let reorder = false;
    switch (f.type) {
      case 'message': {
        const m = f.message;
        if (!m || typeof m !== 'object') break;
        conv.last_message = {
          id: m.id,
          direction: m.direction,
          type: m.type,
          text: m.text || (m.template && m.template.name) || '',
          status: m.status,
          created_at: m.created_at,
        };
        if (m.created_at) conv.last_message_at = m.created_at;
        if (m.direction === 'in') {
          conv.unread_count = (conv.unread_count || 0) + 1;
          if (conv.channel === 'whatsapp') {
            // The window runs from the contact's message; the list's next
            // refresh has the server's value.
            const from = parseTime(m.provider_timestamp) || parseTime(m.created_at) || Date.now();
            if (from + WINDOW_MS > parseTime(conv.window_expires_at)) conv.window_expires_at = new Date(from + WINDOW_MS).toISOString();
          }
          if (conv.channel === 'sms') scheduleRefresh(1500); // STOP and START change the opt-out
          if (m.contact && m.contact.name && !conv.contact.name) conv.contact = { ...conv.contact, name: m.contact.name };
        } else {
          conv.unread_count = 0;
        }
        reorder = true;
        break;
      }
      case 'status':
        if (conv.last_message && Number(conv.last_message.id) === Number(f.message_id)) {
          conv.last_message.status = higherStatus(conv.last_message.status, f.status);
        }
        break;
      case 'assigned':
        conv.assigned_rm_id = f.rm_id ? Number(f.rm_id) : null;
        break;
      default:
        break;
    }
    if (isOpen(conv.id) && thread.ready) {
      const stick = nearBottom();
      renderEvent(f, placeLive);
      if (f.type === 'assigned' || f.type === 'message') renderThreadHead();
      if (f.type === 'message') renderSendArea();
      if (stick || (f.type === 'message' && f.message && f.message.direction === 'out')) scrollToBottom();
    } else if (f.type === 'message' && f.message && f.message.client_msg_id) {
      const box = outbox.get(conv.id);
      if (box) box.delete(f.message.client_msg_id);
    }
    // An RM loses a conversation given to someone else.
    if (f.type === 'assigned' && me && !isSupervisor() && conv.assigned_rm_id !== me.id) {
      removeConv(conv.id, 'This conversation was assigned to another RM.');
      return;
    }
    if (reorder || (f.type === 'assigned' && filter === 'unassigned')) renderList();
    updateItem(conv);
  }

  function higherStatus(a, b) {
    return (STATUS_RANK[b] || 0) > (STATUS_RANK[a] || 0) ? b : a;
  }

  // ---- the thread ----

  function newThread(id) {
    return {
      id,
      ready: false,
      minSeq: 0,
      reachedStart: false,
      loadingOlder: false,
      stick: true, // the view follows new messages
      msgs: new Map(), // message id -> record {m, seq, status, error, el, retried}
      byProvider: new Map(), // provider message id -> record
      pending: new Map(), // client_msg_id -> element of a send not yet confirmed
      statuses: new Map(), // message id -> {status, error} for messages not loaded yet
      reactions: new Map(), // target key -> {emoji, seq}
      orphanReactions: new Map(), // target key -> line element
      calls: new Map(), // call id -> {call, el}
      videos: new Map(), // video call id -> {vc, el}
    };
  }

  function openConversation(id, opts = {}) {
    const conv = convs.get(id);
    if (!conv) return;
    if (isOpen(id)) {
      showThreadView(opts.fromKeyboard);
      return;
    }
    if (thread) drafts.set(thread.id, el.composer.value);
    const t = newThread(id);
    thread = t;
    pub.openConversationId = id;
    el.thread.dataset.id = String(id);
    el.thread.hidden = false;
    el.noThread.hidden = true;
    el.timeline.replaceChildren();
    el.loadOlder.hidden = true;
    el.historyStart.hidden = true;
    setHistoryStatus('Loading messages…');
    el.composer.value = drafts.get(id) || '';
    el.templateError.hidden = true;
    clearInterval(callTicker);
    callTicker = 0;
    markSelected();
    renderThreadHead();
    renderSendArea();
    showThreadView(opts.fromKeyboard);
    if (isSupervisor()) loadRMs();
    enqueue(() => loadThread(t), 'open conversation');
  }

  function showThreadView(fromKeyboard) {
    el.app.dataset.view = 'thread';
    const narrow = window.matchMedia('(max-width: 47.99rem)').matches;
    if (narrow) {
      el.threadTitle.focus({ preventScroll: true });
    } else if (fromKeyboard && !el.composerForm.hidden) {
      el.composer.focus({ preventScroll: true });
    }
  }

  function closeThread() {
    thread = null;
    pub.openConversationId = null;
    el.thread.hidden = true;
    el.thread.removeAttribute('data-id');
    el.noThread.hidden = false;
    el.timeline.replaceChildren();
    el.app.dataset.view = 'list';
    clearTimeout(windowTimer);
    clearInterval(callTicker);
    callTicker = 0;
    markSelected();
  }

  function markSelected() {
    for (const [id, li] of items) {
      const open = pub.openConversationId === id;
      li.classList.toggle('selected', open);
      li.setAttribute('aria-selected', String(open));
    }
    rovingTabindex();
  }

  function goBack() {
    el.app.dataset.view = 'list';
    const li = thread ? items.get(thread.id) : null;
    if (li) li.focus();
  }

  // reloadThread loads the open conversation again from its latest page.
  function reloadThread() {
    if (!thread) return;
    const id = thread.id;
    const t = newThread(id);
    thread = t;
    setHistoryStatus('Loading messages…');
    enqueue(() => loadThread(t), 'reload conversation');
  }

  async function loadThread(t) {
    if (thread !== t) return;
    const conv = convs.get(t.id);
    if (!conv) return;
    const upto = conv.last_seq;
    let evs = [];
    if (upto > 0) {
      try {
        evs = await fetchEvents(t.id, { before: upto + 1, limit: PAGE });
      } catch (e) {
        if (thread !== t || e.status === 401) return;
        if (e.status === 403 || e.status === 404) {
          removeConv(t.id, 'This conversation is no longer available to you.');
          return;
        }
        setHistoryStatus('Could not load the messages.');
        toast(`Could not load the messages: ${e.message}`, {
          kind: 'error',
          actions: [{ label: 'Try again', run: () => { if (thread === t) reloadThread(); } }],
        });
        return;
      }
    }
    if (thread !== t) return;
    evs = evs.filter((f) => f.seq <= upto);
    t.minSeq = evs.length ? evs[0].seq : upto + 1;
    t.reachedStart = t.minSeq <= 1;
    const frag = document.createDocumentFragment();
    for (const f of evs) renderEvent(f, (node) => frag.append(node));
    el.timeline.replaceChildren(frag);
    t.ready = true;
    // Sends still on their way (or failed) stay below the history.
    const box = outbox.get(t.id);
    if (box) {
      for (const entry of box.values()) el.timeline.append(pendingElement(entry));
    }
    setHistoryStatus('');
    renderOlderControls();
    scrollToBottom();
    tickCalls();
    // A short conversation does not fill the screen: there is nothing to
    // scroll, so older pages load at once.
    requestAnimationFrame(() => {
      if (thread === t && !t.reachedStart && el.history.scrollHeight <= el.history.clientHeight + 8) loadOlder();
    });
  }

  async function loadOlder() {
    const t = thread;
    if (!t || !t.ready || t.loadingOlder || t.reachedStart) return;
    t.loadingOlder = true;
    el.loadOlder.disabled = true;
    el.loadOlder.textContent = 'Loading…';
    const before = t.minSeq;
    let evs;
    try {
      evs = await fetchEvents(t.id, { before, limit: PAGE });
    } catch (e) {
      if (thread === t && e.status !== 401) toast(`Could not load older messages: ${e.message}`, { kind: 'error' });
      evs = null;
    }
    if (thread !== t) return;
    t.loadingOlder = false;
    el.loadOlder.disabled = false;
    el.loadOlder.textContent = 'Load older messages';
    if (!evs) return;
    evs = evs.filter((f) => f.seq < before);
    if (!evs.length) {
      t.reachedStart = true;
      renderOlderControls();
      return;
    }
    const frag = document.createDocumentFragment();
    for (const f of evs) renderEvent(f, (node) => frag.append(node));
    // Keep what the RM was looking at in place.
    const fromBottom = el.history.scrollHeight - el.history.scrollTop;
    el.timeline.prepend(frag);
    el.history.scrollTop = el.history.scrollHeight - fromBottom;
    t.minSeq = evs[0].seq;
    t.reachedStart = t.minSeq <= 1;
    renderOlderControls();
    tickCalls();
  }

  function renderOlderControls() {
    const t = thread;
    el.loadOlder.hidden = !t || !t.ready || t.reachedStart;
    el.historyStart.hidden = !t || !t.ready || !t.reachedStart;
  }

  function setHistoryStatus(text) {
    el.historyStatus.textContent = text;
    el.historyStatus.hidden = !text;
  }

  function nearBottom() {
    return el.history.scrollHeight - el.history.scrollTop - el.history.clientHeight < 80;
  }

  function scrollToBottom() {
    el.history.scrollTop = el.history.scrollHeight;
    if (thread) thread.stick = true;
  }

  function onHistoryScroll() {
    if (thread) thread.stick = nearBottom();
    if (el.history.scrollTop < 120) loadOlder();
  }

  // An image or video that loads makes the history taller: one at the
  // bottom should not push the newest messages out of view.
  function onMediaLoad() {
    if (thread && thread.stick) scrollToBottom();
  }

  // An attachment that cannot be fetched says so instead of a broken image.
  function onMediaError(ev) {
    const img = ev.target;
    if (!(img instanceof HTMLImageElement) || !el.timeline.contains(img)) return;
    img.replaceWith(h('span', { class: 'media-missing', text: 'Image could not be loaded (open)' }));
  }

  // placeLive puts a new event below everything shown, above the sends not
  // confirmed yet.
  function placeLive(node) {
    const first = el.timeline.querySelector(':scope > .pending');
    if (first === node) return;
    el.timeline.insertBefore(node, first);
  }

  function renderThreadHead() {
    const conv = thread && convs.get(thread.id);
    if (!conv) return;
    el.threadTitle.textContent = contactLabel(conv);
    const parts = [];
    if (conv.contact.name && conv.contact.phone) parts.push(conv.contact.phone);
    parts.push(CHANNEL[conv.channel] || conv.channel);
    parts.push(conv.assigned_rm_id ? `Assigned to ${rmLabel(conv.assigned_rm_id)}` : 'Unassigned');
    el.threadSub.textContent = parts.join(' · ');
    const messaging = conv.channel === 'whatsapp' || conv.channel === 'sms';
    el.videoButton.hidden = !messaging;
    el.assign.hidden = !isSupervisor();
    if (isSupervisor()) renderAssignSelect(conv);
  }

  // sendMode: what the send area offers for conv.
  function sendMode(conv) {
    if (conv.channel === 'voice') return 'voice';
    if (conv.channel === 'sms') return conv.sms_opted_out ? 'opted-out' : 'text';
    if (conv.channel === 'whatsapp') return parseTime(conv.window_expires_at) > Date.now() ? 'text' : 'template';
    return 'text';
  }

  function renderSendArea() {
    const conv = thread && convs.get(thread.id);
    clearTimeout(windowTimer);
    windowTimer = 0;
    if (!conv) return;
    const mode = sendMode(conv);
    const hadFocus = document.activeElement === el.composer;
    el.composerForm.hidden = mode !== 'text';
    el.templateBox.hidden = mode !== 'template';
    el.optedOut.hidden = mode !== 'opted-out';
    el.noSend.hidden = mode !== 'voice';
    // The video link goes out as a message: it follows the same rules.
    el.videoButton.disabled = mode !== 'text';
    el.videoButton.title = mode === 'template' ? 'The link cannot be sent outside the 24-hour window'
      : mode === 'opted-out' ? 'The contact has opted out of SMS' : '';
    if (mode === 'template') {
      el.templateSend.disabled = false;
      renderTemplates();
    }
    if (mode === 'text' && conv.channel === 'whatsapp') {
      // The window closes while the conversation is open: switch then.
      const left = parseTime(conv.window_expires_at) - Date.now();
      windowTimer = setTimeout(renderSendArea, Math.min(Math.max(left + 250, 250), 2 ** 31 - 1));
    }
    if (hadFocus && el.composerForm.hidden && !el.templateBox.hidden) el.templateSelect.focus();
  }

  // ---- rendering events ----

  // renderEvent renders one event of the open thread; place puts a new
  // node where it belongs. Events that change what is shown (statuses,
  // reactions, call progress) change it in place.
  function renderEvent(f, place) {
    switch (f.type) {
      case 'message':
        if (f.message && typeof f.message === 'object') renderMessageEvent(f, place);
        break;
      case 'status':
        renderStatusEvent(f);
        break;
      case 'assigned':
        place(h('div', { class: 'line assigned-line', dataset: { seq: f.seq } },
          f.previous_rm_id && f.rm_id
            ? `Reassigned from ${rmLabel(Number(f.previous_rm_id))} to ${rmLabel(Number(f.rm_id))}`
            : f.rm_id ? `Assigned to ${rmLabel(Number(f.rm_id))}` : 'Unassigned'));
        break;
      case 'call':
        renderCallEvent(f, place);
        break;
      case 'video_call':
        renderVideoEvent(f, place);
        break;
      default:
        // Event types of newer servers: only their seq counts.
        break;
    }
  }

  function renderMessageEvent(f, place) {
    const t = thread;
    const m = f.message;
    const id = Number(m.id);
    // The send this message confirms is done.
    if (m.client_msg_id) {
      const box = outbox.get(t.id);
      if (box) box.delete(m.client_msg_id);
    }
    let node = null;
    if (m.client_msg_id && t.pending.has(m.client_msg_id)) {
      node = t.pending.get(m.client_msg_id);
      t.pending.delete(m.client_msg_id);
      node.classList.remove('pending');
    }
    if (t.msgs.has(id)) {
      if (node) node.remove();
      return;
    }
    if (m.type === 'reaction' && m.direction === 'in') {
      if (node) node.remove();
      renderReaction(f, place);
      return;
    }
    const rec = { m, seq: f.seq, status: m.status || '', error: m.error || null, el: null, retried: false };
    const early = t.statuses.get(id);
    if (early) {
      t.statuses.delete(id);
      mergeStatus(rec, early.status, early.error);
      if (early.providerId && !m.provider_message_id) rec.m = { ...m, provider_message_id: early.providerId };
    }
    rec.el = node || h('div');
    fillMessage(rec);
    t.msgs.set(id, rec);
    if (rec.m.provider_message_id) t.byProvider.set(String(rec.m.provider_message_id), rec);
    // Reactions that came before their message (it was in an older page).
    for (const key of [String(id), rec.m.provider_message_id ? String(rec.m.provider_message_id) : '']) {
      if (!key) continue;
      const line = t.orphanReactions.get(key);
      if (line) {
        t.orphanReactions.delete(key);
        line.remove();
      }
      showReactions(rec);
    }
    place(rec.el);
  }

  function mergeStatus(rec, status, error) {
    if (!status) return;
    if ((STATUS_RANK[status] || 0) > (STATUS_RANK[rec.status] || 0)) {
      rec.status = status;
      if (status === 'failed') rec.error = error || rec.error;
    } else if (status === 'failed' && rec.status === 'failed' && error) {
      rec.error = error;
    }
  }

  function renderStatusEvent(f) {
    const t = thread;
    const id = Number(f.message_id);
    const rec = t.msgs.get(id);
    const providerId = f.provider_message_id ? String(f.provider_message_id) : '';
    if (!rec) {
      const early = t.statuses.get(id) || { status: '', error: null, providerId: '' };
      const r = { status: early.status, error: early.error, providerId: providerId || early.providerId };
      mergeStatus(r, f.status, f.error);
      t.statuses.set(id, r);
      return;
    }
    // An outbound message learns its provider id after it was stored:
    // reactions name it by that id.
    if (providerId && !rec.m.provider_message_id) setProviderId(rec, providerId);
    const before = rec.status;
    mergeStatus(rec, f.status, f.error);
    if (rec.status !== before || f.status === 'failed') fillMessage(rec);
  }

  function setProviderId(rec, providerId) {
    const t = thread;
    rec.m = { ...rec.m, provider_message_id: providerId };
    t.byProvider.set(providerId, rec);
    const line = t.orphanReactions.get(providerId);
    if (line) {
      t.orphanReactions.delete(providerId);
      line.remove();
    }
    showReactions(rec);
  }

  function reactionTarget(m) {
    let p = m.payload;
    if (typeof p === 'string') {
      try {
        p = JSON.parse(p);
      } catch {
        p = null;
      }
    }
    const r = (p && (p.reaction || p)) || {};
    const target = r.message_id !== undefined && r.message_id !== null ? String(r.message_id) : '';
    const emoji = typeof r.emoji === 'string' ? r.emoji : (m.text || '');
    return { target, emoji };
  }

  function findTarget(key) {
    if (!key) return null;
    return thread.byProvider.get(key) || thread.msgs.get(Number(key)) || null;
  }

  function renderReaction(f, place) {
    const t = thread;
    const { target, emoji } = reactionTarget(f.message);
    const prev = t.reactions.get(target);
    if (!prev || prev.seq < f.seq) t.reactions.set(target, { emoji, seq: f.seq });
    const rec = findTarget(target);
    if (rec) {
      showReactions(rec);
      return;
    }
    // The message reacted to is not shown (yet): a line, replaced by the
    // reaction on the message if an older page brings it.
    const text = emoji ? `${contactLabel(convs.get(t.id))} reacted ${emoji} to a message` : `${contactLabel(convs.get(t.id))} removed a reaction`;
    const line = h('div', { class: 'line reaction-line', dataset: { seq: f.seq } },
      text, ' ', timeEl(f.message.created_at, 'line-time', msgWhen));
    const old = t.orphanReactions.get(target);
    if (old && prev && prev.seq > f.seq) return; // an older one; the newer line stays
    if (old) old.remove();
    if (target) t.orphanReactions.set(target, line);
    place(line);
  }

  function showReactions(rec) {
    const t = thread;
    const keys = [String(rec.m.id)];
    if (rec.m.provider_message_id) keys.push(String(rec.m.provider_message_id));
    let best = null;
    for (const k of keys) {
      const r = t.reactions.get(k);
      if (r && (!best || r.seq > best.seq)) best = r;
    }
    const box = rec.el.querySelector(':scope > .reactions');
    if (!box) return;
    if (best && best.emoji) {
      box.textContent = best.emoji;
      box.setAttribute('aria-label', `Reaction ${best.emoji}`);
      box.hidden = false;
    } else {
      box.textContent = '';
      box.hidden = true;
    }
  }

  function templateBody(tpl) {
    if (!tpl || !templates) return '';
    const found = templates.find((x) => x.name === tpl.name && (!tpl.language || x.language === tpl.language)) ||
      templates.find((x) => x.name === tpl.name);
    if (!found) return '';
    return fillTemplate(found.body, tpl.params || []);
  }

  function fillTemplate(body, params) {
    return String(body || '').replace(/\{\{\s*(\d+)\s*\}\}/g, (all, n) => {
      const v = params[Number(n) - 1];
      return v ? String(v) : all;
    });
  }

  // fillMessage renders a message record into rec.el.
  function fillMessage(rec) {
    const m = rec.m;
    const out = m.direction === 'out';
    const e = rec.el;
    e.className = `msg ${out ? 'out' : 'in'}`;
    e.dataset.id = String(m.id);
    e.dataset.seq = String(rec.seq);
    e.dataset.direction = out ? 'out' : 'in';
    e.dataset.type = String(m.type || 'text');
    if (m.client_msg_id) e.dataset.clientMsgId = m.client_msg_id;
    const bubble = h('div', { class: 'bubble' });
    bubble.append(...messageBody(m));
    const meta = h('div', { class: 'meta' }, timeEl(m.created_at, 'msg-time', msgWhen));
    if (out) meta.append(statusEl(STATUS_SHOWN[rec.status] || 'queued'));
    bubble.append(meta);
    if (out && rec.status === 'failed') {
      bubble.append(h('p', { class: 'error', text: `Not delivered: ${errorText(rec.error) || 'the provider refused the message.'}` }));
      if (!rec.retried) {
        bubble.append(h('button', { type: 'button', class: 'retry', dataset: { messageId: m.id }, text: 'Retry' }));
      }
    }
    e.replaceChildren(bubble, h('span', { class: 'reactions', hidden: true }));
    if (thread && thread.msgs.get(Number(m.id)) === rec) showReactions(rec);
  }

  function statusEl(shown) {
    const label = STATUS_LABEL[shown] || shown;
    return h('span', { class: 'status', dataset: { status: shown }, title: label },
      h('span', { class: 'tick', 'aria-hidden': 'true', text: STATUS_GLYPH[shown] || '' }),
      h('span', { class: 'visually-hidden', text: label }));
  }

  // messageBody renders what a message says, by type.
  function messageBody(m) {
    const type = String(m.type || 'text');
    const text = m.text ? String(m.text) : '';
    const kids = [];
    const media = Array.isArray(m.media) ? m.media : [];
    if (media.length && m.id) {
      media.forEach((md, n) => kids.push(mediaEl(m, md || {}, n, type)));
    }
    switch (type) {
      case 'text':
        kids.push(h('p', { class: 'text' }, linkify(text)));
        break;
      case 'image':
      case 'video':
      case 'sticker':
      case 'document':
      case 'audio':
        if (!media.length) kids.push(h('p', { class: 'kind', text: previewText({ type, text: '' }) }));
        if (text) kids.push(h('p', { class: 'text' }, linkify(text)));
        break;
      case 'location':
        kids.push(locationEl(m, text));
        break;
      case 'reaction':
        kids.push(h('p', { class: 'text', text: text ? `Reacted ${text}` : 'Removed a reaction' }));
        break;
      case 'contacts':
        kids.push(h('p', { class: 'kind', text: 'Contact card' }), h('p', { class: 'text', text: text.replace(/^Contact: /, '') }));
        break;
      case 'interactive':
      case 'button':
        kids.push(h('p', { class: 'kind', text: 'Replied' }), h('p', { class: 'text', text }));
        break;
      case 'template': {
        const body = text || templateBody(m.template);
        const name = m.template && m.template.name ? m.template.name : '';
        kids.push(h('p', { class: 'kind', text: name ? `Template: ${name}` : 'Template' }));
        if (body) kids.push(h('p', { class: 'text' }, linkify(body)));
        break;
      }
      case 'system':
        kids.push(h('p', { class: 'text' }, linkify(text)));
        break;
      default: {
        // unsupported, unknown:<type>, and types this page does not know.
        const what = type.startsWith('unknown:') ? type.slice('unknown:'.length) : type === 'unsupported' ? '' : type;
        kids.push(h('p', { class: 'kind unsupported', text: what ? `Unsupported message (${what})` : 'Unsupported message' }));
        if (text) kids.push(h('p', { class: 'text', text }));
      }
    }
    return kids;
  }

  function mediaEl(m, md, n, type) {
    const url = mediaURL(m.id, n);
    const mime = String(md.mime_type || '');
    const kind = ['image', 'sticker', 'video', 'audio', 'document'].includes(type) ? type
      : mime.startsWith('image/') ? 'image' : mime.startsWith('video/') ? 'video' : mime.startsWith('audio/') ? 'audio' : 'document';
    const name = md.filename || (kind === 'document' ? 'Document' : `${kind[0].toUpperCase()}${kind.slice(1)}`);
    const download = h('a', { class: 'download', href: url, download: md.filename || '', target: '_blank', rel: 'noopener' },
      `${kind === 'document' ? name : `Download ${kind}`}${mime ? ` (${mime})` : ''}`);
    switch (kind) {
      case 'image':
      case 'sticker':
        return h('a', { class: `media ${kind}`, href: url, target: '_blank', rel: 'noopener', title: 'Open full size' },
          h('img', { src: url, alt: md.caption || (kind === 'sticker' ? 'Sticker' : 'Image from the contact'), loading: 'lazy' }));
      case 'video':
        return h('div', { class: 'media video' }, h('video', { src: url, controls: true, preload: 'metadata' }), download);
      case 'audio':
        return h('div', { class: 'media audio' }, h('audio', { src: url, controls: true, preload: 'none' }), download);
      default:
        return h('div', { class: 'media document' }, download);
    }
  }

  function locationEl(m, text) {
    let p = m.payload;
    if (typeof p === 'string') {
      try {
        p = JSON.parse(p);
      } catch {
        p = null;
      }
    }
    const loc = (p && (p.location || p)) || {};
    const lat = Number(loc.latitude);
    const lon = Number(loc.longitude);
    const label = [loc.name, loc.address].filter(Boolean).join(', ') || text;
    const box = h('div', { class: 'location' }, h('p', { class: 'kind', text: 'Location' }));
    if (label) box.append(h('p', { class: 'text', text: label }));
    if (Number.isFinite(lat) && Number.isFinite(lon) && (loc.latitude !== undefined)) {
      const coords = `${lat.toFixed(5)}, ${lon.toFixed(5)}`;
      box.append(h('a', {
        href: `https://www.openstreetmap.org/?mlat=${lat}&mlon=${lon}#map=16/${lat}/${lon}`,
        target: '_blank',
        rel: 'noopener noreferrer',
        text: `Open map (${coords})`,
      }));
    }
    return box;
  }

  function callText(c) {
    const who = contactLabel(convs.get(thread.id));
    switch (c.status) {
      case 'requested': return 'Call requested…';
      case 'dialling': return c.first_leg === 'rm' ? 'Ringing your phone…' : `Ringing ${who}…`;
      case 'contact_answered': return `${who} answered; connecting you…`;
      case 'connected': {
        const since = parseTime(c.started_at);
        return since ? `Call connected · ${clock((Date.now() - since) / 1000)}` : 'Call connected';
      }
      case 'completed': return `Call completed · ${duration(c.talk_seconds)}`;
      case 'no_answer': return 'Call not answered';
      case 'busy': return 'Call not connected: the line was busy';
      case 'failed': return `Call failed${c.error ? `: ${c.error}` : ''}`;
      case 'canceled': return 'Call canceled';
      default: return `Call: ${c.status || 'unknown'}`;
    }
  }

  function renderCallEvent(f, place) {
    const c = f.call && typeof f.call === 'object' ? f.call : {};
    const key = String(c.id);
    const t = thread;
    let rec = t.calls.get(key);
    if (rec) {
      if ((CALL_RANK[c.status] || 0) > (CALL_RANK[rec.call.status] || 0)) {
        rec.call = c;
        fillCall(rec);
        tickCalls();
      }
      return;
    }
    rec = { call: c, el: h('div', { class: 'line call-line', dataset: { seq: f.seq, callId: c.id } }) };
    t.calls.set(key, rec);
    fillCall(rec);
    place(rec.el);
    tickCalls();
  }

  function fillCall(rec) {
    const c = rec.call;
    rec.el.dataset.status = c.status || '';
    const kids = [h('span', { class: 'call-text', text: callText(c) })];
    const when = timeEl(c.requested_at || c.started_at, 'line-time', msgWhen);
    if (when) kids.push(' ', when);
    rec.el.replaceChildren(...kids);
  }

  // tickCalls keeps the clock of connected calls running.
  function tickCalls() {
    const live = thread && [...thread.calls.values()].some((r) => r.call.status === 'connected');
    if (live && !callTicker) {
      callTicker = setInterval(() => {
        if (!thread) return;
        for (const r of thread.calls.values()) {
          if (r.call.status === 'connected') {
            const span = r.el.querySelector('.call-text');
            if (span) span.textContent = callText(r.call);
          }
        }
      }, 1000);
    } else if (!live && callTicker) {
      clearInterval(callTicker);
      callTicker = 0;
    }
  }

  function videoText(v) {
    switch (v.status) {
      case 'created': return 'Video call link sent';
      case 'active': return 'Video call in progress';
      case 'ended': {
        const why = {
          hangup: '', left: 'everyone left', expired: 'the link expired before both joined',
          limit: 'it reached the maximum length', aborted: 'the link could not be sent',
        }[v.end_reason];
        const parts = ['Video call ended'];
        if (why) parts.push(`(${why})`);
        if (v.duration_seconds > 0) parts.push(`· ${duration(v.duration_seconds)}`);
        return parts.join(' ');
      }
      default: return `Video call: ${v.status || 'unknown'}`;
    }
  }

  function renderVideoEvent(f, place) {
    const v = f.video_call && typeof f.video_call === 'object' ? f.video_call : {};
    const key = String(v.id);
    const t = thread;
    let rec = t.videos.get(key);
    if (!rec) {
      rec = { vc: v, el: h('div', { class: 'line video-line', dataset: { seq: f.seq, videoCallId: v.id } }) };
      t.videos.set(key, rec);
      place(rec.el);
    } else if ((VIDEO_RANK[v.status] || 0) <= (VIDEO_RANK[rec.vc.status] || 0)) {
      return;
    }
    rec.vc = v;
    rec.el.dataset.status = v.status || '';
    const kids = [h('span', { text: videoText(v) })];
    const when = timeEl(v.ended_at || v.started_at || v.created_at, 'line-time', msgWhen);
    if (when) kids.push(' ', when);
    rec.el.replaceChildren(...kids);
  }

  // ---- sending ----

  function outboxFor(id) {
    let box = outbox.get(id);
    if (!box) {
      box = new Map();
      outbox.set(id, box);
    }
    return box;
  }

  // pendingElement renders a send not confirmed by the server yet.
  function pendingElement(entry) {
    let e = thread && thread.pending.get(entry.cmid);
    if (!e) {
      e = h('div');
      if (thread && thread.id === entry.convId) thread.pending.set(entry.cmid, e);
    }
    e.className = 'msg out pending';
    e.dataset.id = entry.messageId ? String(entry.messageId) : '';
    e.dataset.seq = entry.seq ? String(entry.seq) : '';
    e.dataset.direction = 'out';
    e.dataset.type = entry.body.template ? 'template' : 'text';
    e.dataset.clientMsgId = entry.cmid;
    const bubble = h('div', { class: 'bubble' });
    if (entry.body.template) bubble.append(h('p', { class: 'kind', text: `Template: ${entry.body.template.name}` }));
    bubble.append(h('p', { class: 'text' }, linkify(entry.preview)));
    const shown = entry.state === 'failed' ? 'failed' : 'queued';
    bubble.append(h('div', { class: 'meta' }, timeEl(entry.createdAt, 'msg-time', msgWhen), statusEl(shown)));
    if (entry.state === 'failed') {
      bubble.append(
        h('p', { class: 'error', text: `Not sent: ${entry.error || 'unknown error'}` }),
        h('button', { type: 'button', class: 'retry', dataset: { clientMsgId: entry.cmid }, text: 'Retry' }),
      );
    }
    e.replaceChildren(bubble, h('span', { class: 'reactions', hidden: true }));
    return e;
  }

  function updatePending(entry) {
    const box = outbox.get(entry.convId);
    if (!box || box.get(entry.cmid) !== entry) return; // confirmed meanwhile
    if (thread && thread.id === entry.convId && thread.ready) pendingElement(entry);
  }

  function sendNew(conv, body, preview) {
    const entry = {
      cmid: newId(),
      convId: conv.id,
      body,
      preview,
      state: 'sending',
      error: '',
      messageId: 0,
      seq: 0,
      createdAt: new Date().toISOString(),
    };
    outboxFor(conv.id).set(entry.cmid, entry);
    if (isOpen(conv.id) && thread.ready) {
      el.timeline.append(pendingElement(entry));
      scrollToBottom();
    }
    postEntry(entry);
    return entry;
  }

  async function postEntry(entry) {
    const g = gen;
    entry.state = 'sending';
    entry.error = '';
    updatePending(entry);
    try {
      const data = await apiCall('POST', `/api/conversations/${encodeURIComponent(entry.convId)}/messages`,
        { client_msg_id: entry.cmid, ...entry.body });
      if (g !== gen) return;
      const m = data.message || {};
      entry.state = 'queued';
      entry.messageId = Number(m.id) || 0;
      entry.seq = Number(m.seq) || 0;
      if (m.status === 'failed') {
        entry.state = 'failed';
        entry.error = errorText(m.error) || 'the message was not sent';
      }
      updatePending(entry);
    } catch (e) {
      if (g !== gen || e.status === 401) return;
      entry.state = 'failed';
      entry.error = e.message;
      updatePending(entry);
      const conv = convs.get(entry.convId);
      if (e.status === 422 && conv) {
        if (conv.channel === 'whatsapp' && !entry.body.template) conv.window_expires_at = null;
        if (conv.channel === 'sms') conv.sms_opted_out = true;
        if (isOpen(conv.id)) renderSendArea();
        toast(e.message, { kind: 'error' });
      } else if (e.status === 403) {
        toast('You can no longer send in this conversation.', { kind: 'error' });
        scheduleRefresh(0);
      }
    }
  }

  function onComposerSubmit(ev) {
    ev.preventDefault();
    const conv = thread && convs.get(thread.id);
    if (!conv) return;
    const text = el.composer.value;
    if (!text.trim()) {
      el.composer.focus();
      return;
    }
    if (sendMode(conv) !== 'text') {
      renderSendArea();
      return;
    }
    el.composer.value = '';
    drafts.delete(conv.id);
    sendNew(conv, { text }, text);
    el.composer.focus();
  }

  // isEnter: the Enter key. Some automation drivers type a newline
  // character as the key "\n" rather than "Enter".
  function isEnter(ev) {
    return ev.key === 'Enter' || ev.key === '\n' || ev.key === '\r';
  }

  function onComposerKey(ev) {
    if (isEnter(ev) && !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      el.composerForm.requestSubmit ? el.composerForm.requestSubmit() : onComposerSubmit(ev);
    }
  }

  function onTimelineClick(ev) {
    const btn = ev.target.closest('button.retry');
    if (!btn || !thread) return;
    const conv = convs.get(thread.id);
    if (!conv) return;
    if (btn.dataset.clientMsgId) {
      const entry = outboxFor(conv.id).get(btn.dataset.clientMsgId);
      if (entry) postEntry(entry);
      return;
    }
    const rec = thread.msgs.get(Number(btn.dataset.messageId));
    if (!rec) return;
    // The server keeps a failed message as it is; a retry is a new message.
    const m = rec.m;
    let body;
    let preview;
    if (m.template && m.template.name) {
      body = { template: { name: m.template.name, language: m.template.language, params: m.template.params || [] } };
      preview = m.text || templateBody(m.template) || m.template.name;
    } else if (m.text) {
      body = { text: m.text };
      preview = m.text;
    } else {
      toast('This message cannot be sent again from here.', { kind: 'error' });
      return;
    }
    if (body.text && sendMode(conv) !== 'text') {
      toast('The message cannot be sent again as it is: outside the 24-hour window only templates can be sent.', { kind: 'error' });
      return;
    }
    rec.retried = true;
    fillMessage(rec);
    sendNew(conv, body, preview);
  }

  // ---- templates ----

  function loadTemplates() {
    if (templates || templatesLoading) return templatesLoading;
    const g = gen;
    templatesLoading = apiCall('GET', '/api/templates').then((data) => {
      if (g !== gen) return;
      templates = (Array.isArray(data.templates) ? data.templates : [])
        .filter((x) => x && x.name)
        .map((x) => ({ name: String(x.name), language: String(x.language || ''), body: String(x.body || ''), params: Number(x.params) || 0 }));
      if (thread && !el.templateBox.hidden) renderTemplates();
      // Template messages already shown can now show their text.
      if (thread) {
        for (const rec of thread.msgs.values()) if (rec.m.type === 'template' && !rec.m.text) fillMessage(rec);
      }
    }).catch((e) => {
      if (g === gen) console.warn('console: templates', e);
    }).finally(() => {
      if (g === gen) templatesLoading = null;
    });
    return templatesLoading;
  }

  function renderTemplates() {
    const sel = el.templateSelect;
    const current = sel.value;
    if (!templates) {
      sel.replaceChildren(h('option', { value: '', text: 'Loading templates…' }));
      sel.disabled = true;
      el.templateSend.disabled = true;
      loadTemplates();
      return;
    }
    sel.disabled = templates.length === 0;
    const opts = [h('option', { value: '', text: templates.length ? 'Choose a template' : 'No approved templates' })];
    for (const x of templates) {
      opts.push(h('option', { value: templateKey(x), dataset: { language: x.language }, text: `${x.name} (${x.language})` }));
    }
    sel.replaceChildren(...opts);
    if (current && chosenTemplate(current)) sel.value = current;
    renderTemplateParams();
  }

  // templateKey is a template's option value: its name, with the language
  // when another template has the same name.
  function templateKey(x) {
    const twin = templates.some((y) => y !== x && y.name === x.name);
    return twin ? `${x.name}|${x.language}` : x.name;
  }

  function chosenTemplate(value) {
    const v = value === undefined ? el.templateSelect.value : value;
    if (!v || !templates) return null;
    return templates.find((x) => templateKey(x) === v) || null;
  }

  function renderTemplateParams() {
    const tpl = chosenTemplate();
    el.templateError.hidden = true;
    const old = [...el.templateParams.querySelectorAll('.template-param')].map((i) => i.value);
    const kids = [];
    if (tpl) {
      for (let i = 1; i <= tpl.params; i++) {
        const id = `template-param-${i}`;
        kids.push(h('div', { class: 'template-param-row' },
          h('label', { for: id, text: `Parameter {{${i}}}` }),
          h('input', { id, class: 'template-param', type: 'text', dataset: { index: i }, value: old[i - 1] || '', autocomplete: 'off' })));
      }
    }
    el.templateParams.replaceChildren(...kids);
    el.templateSend.disabled = !tpl;
    renderTemplatePreview();
  }

  function templateValues() {
    return [...el.templateParams.querySelectorAll('.template-param')].map((i) => i.value.trim());
  }

  function renderTemplatePreview() {
    const tpl = chosenTemplate();
    el.templatePreview.hidden = !tpl;
    el.templatePreview.textContent = tpl ? fillTemplate(tpl.body, templateValues()) : '';
  }

  function onTemplateSend() {
    const conv = thread && convs.get(thread.id);
    const tpl = chosenTemplate();
    if (!conv) return;
    if (!tpl) {
      showTemplateError('Choose a template first.');
      el.templateSelect.focus();
      return;
    }
    const params = templateValues();
    const missing = params.findIndex((v) => !v);
    if (missing >= 0) {
      showTemplateError(`Fill in parameter {{${missing + 1}}}.`);
      el.templateParams.querySelectorAll('.template-param')[missing].focus();
      return;
    }
    el.templateError.hidden = true;
    sendNew(conv, { template: { name: tpl.name, language: tpl.language, params } }, fillTemplate(tpl.body, params));
    for (const i of el.templateParams.querySelectorAll('.template-param')) i.value = '';
    renderTemplatePreview();
  }

  function showTemplateError(text) {
    el.templateError.textContent = text;
    el.templateError.hidden = false;
  }

  // ---- supervisors: RMs and assignment ----

  async function loadRMs() {
    const g = gen;
    try {
      const data = await apiCall('GET', '/api/rms');
      if (g !== gen) return;
      rms.clear();
      for (const r of Array.isArray(data.rms) ? data.rms : []) {
        if (!r || !Number.isFinite(Number(r.id))) continue;
        rms.set(Number(r.id), {
          id: Number(r.id), username: String(r.username || ''), name: String(r.name || ''),
          role: String(r.role || ''), online: !!r.online,
        });
      }
      const self = me && rms.get(me.id);
      if (self && self.name && !me.name) {
        me.name = self.name;
        pub.rm = { ...me };
        renderMe();
      }
      renderList(true);
      if (thread) renderThreadHead();
    } catch (e) {
      if (g === gen && e.status !== 401) console.warn('console: rms', e);
    }
  }

  function renderAssignSelect(conv) {
    const sel = el.assignSelect;
    const keep = document.activeElement === sel ? sel.value : '';
    const list = [...rms.values()].sort((a, b) => Number(b.online) - Number(a.online) ||
      (a.name || a.username).localeCompare(b.name || b.username));
    const opts = [];
    if (!conv.assigned_rm_id) opts.push(h('option', { value: '', text: 'Unassigned' }));
    else if (!rms.has(conv.assigned_rm_id)) opts.push(h('option', { value: String(conv.assigned_rm_id), text: rmLabel(conv.assigned_rm_id) }));
    for (const r of list) {
      const label = `${r.name || r.username}${r.name ? ` (${r.username})` : ''}${r.role === 'supervisor' ? ', supervisor' : ''} · ${r.online ? 'online' : 'offline'}`;
      opts.push(h('option', { value: String(r.id), class: r.online ? 'online' : 'offline', text: label }));
    }
    sel.replaceChildren(...opts);
    const chosen = assignChoice && assignChoice.conv === conv.id ? assignChoice.rm : '';
    sel.value = keep || chosen || (conv.assigned_rm_id ? String(conv.assigned_rm_id) : '');
  }

  function onAssignChoice() {
    assignChoice = thread ? { conv: thread.id, rm: el.assignSelect.value } : null;
  }

  async function onAssign() {
    const conv = thread && convs.get(thread.id);
    const rmId = Number(el.assignSelect.value);
    if (!conv || !rmId) {
      toast('Choose an RM to assign the conversation to.', { kind: 'error' });
      return;
    }
    if (rmId === conv.assigned_rm_id) {
      toast(`Already assigned to ${rmLabel(rmId)}.`);
      return;
    }
    el.assignButton.disabled = true;
    const g = gen;
    try {
      const data = await apiCall('POST', `/api/conversations/${encodeURIComponent(conv.id)}/assign`, { rm_id: rmId });
      if (g !== gen) return;
      if (assignChoice && assignChoice.conv === conv.id) assignChoice = null;
      const c = data.conversation;
      if (c && convs.get(conv.id) === conv) {
        conv.assigned_rm_id = c.assigned_rm_id ? Number(c.assigned_rm_id) : null;
        updateItem(conv);
        if (filter === 'unassigned') renderList();
        if (isOpen(conv.id)) renderThreadHead();
      }
      toast(`Assigned to ${rmLabel(rmId)}.`);
    } catch (e) {
      if (g === gen && e.status !== 401) toast(`Could not assign: ${e.message}`, { kind: 'error' });
    } finally {
      el.assignButton.disabled = false;
    }
  }

  // ---- calls ----

  async function onCall() {
    const conv = thread && convs.get(thread.id);
    if (!conv) return;
    el.callButton.disabled = true;
    const g = gen;
    try {
      await apiCall('POST', '/api/calls', { conversation_id: conv.id });
      if (g === gen) toast(`Calling ${contactLabel(conv)}. Your phone will ring too.`);
    } catch (e) {
      if (g === gen && e.status !== 401) toast(`Could not place the call: ${e.message}`, { kind: 'error' });
    } finally {
      // A second click right away would place a second call.
      setTimeout(() => { el.callButton.disabled = false; }, 1500);
    }
  }

  async function onVideo() {
    const conv = thread && convs.get(thread.id);
    if (!conv) return;
    // The tab opens now, while the click still counts as the RM's: a tab
    // opened after the answer would be blocked as a pop-up.
    let win = null;
    try {
      win = window.open('', '_blank');
      if (win) win.opener = null;
    } catch {
      win = null;
    }
    el.videoButton.disabled = true;
    const g = gen;
    try {
      const data = await apiCall('POST', '/api/video-calls', { conversation_id: conv.id });
      if (g !== gen) return;
      const link = data.video_call && data.video_call.link;
      if (!link) throw new ApiError(500, 'The server did not send a link.');
      if (win && !win.closed) {
        win.location.href = link;
        toast(`Video call link sent to ${contactLabel(conv)}.`);
      } else {
        toast(`Video call link sent to ${contactLabel(conv)}.`, {
          actions: [{ label: 'Open the video call', href: link }],
          timeout: 0,
        });
      }
    } catch (e) {
      if (win && !win.closed) win.close();
      if (g === gen && e.status !== 401) toast(`Could not start the video call: ${e.message}`, { kind: 'error' });
    } finally {
      if (isOpen(conv.id)) renderSendArea();
    }
  }

  // loadInvites shows the video call invitations still open (made while
  // this RM was offline or the socket was down).
  async function loadInvites(g) {
    try {
      const body = await apiCall('GET', '/api/video-invites');
      if (g !== gen || !body || !Array.isArray(body.video_invites)) return;
      for (const v of body.video_invites) videoInvite(v);
    } catch (e) {
      // Best effort: live invitations still arrive on the socket.
    }
  }

  function videoInvite(v) {
    if (!v || !v.link) return;
    const key = `video-invite-${v.id}`;
    const from = v.from_name || (v.from_rm_id ? rmLabel(Number(v.from_rm_id)) : 'Someone');
    const expires = parseTime(v.expires_at);
    const timeout = expires ? Math.max(0, Math.min(expires - Date.now(), 2 ** 31 - 1)) : 0;
    if (expires && timeout === 0) return;
    toast(`${from} invites you to a video call`, {
      kind: 'invite',
      key,
      timeout,
      actions: [
        { label: 'Join', cls: 'join primary', run: () => window.open(v.link, '_blank', 'noopener') },
        { label: 'Dismiss', cls: 'dismiss' },
      ],
      noClose: true,
    });
  }

  // ---- toasts ----

  function toast(text, opts = {}) {
    const kind = opts.kind || 'info';
    if (opts.key) dismissToast(opts.key);
    const box = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status', dataset: { kind, key: opts.key } });
    box.append(h('p', { class: 'toast-text', text }));
    const actions = h('div', { class: 'toast-actions' });
    const close = () => {
      clearTimeout(timer);
      box.remove();
    };
    for (const a of opts.actions || []) {
      if (a.href) {
        actions.append(h('a', { class: `button ${a.cls || ''}`, href: a.href, target: '_blank', rel: 'noopener', text: a.label, onclick: close }));
      } else {
        actions.append(h('button', {
          type: 'button',
          class: a.cls || '',
          text: a.label,
          onclick: () => {
            close();
            if (a.run) a.run();
          },
        }));
      }
    }
    if (!opts.noClose) {
      actions.append(h('button', { type: 'button', class: 'toast-close quiet', 'aria-label': 'Dismiss notification', text: '\u00d7', onclick: close }));
    }
    box.append(actions);
    el.toasts.append(box);
    const timeout = opts.timeout === undefined ? (kind === 'error' ? 10000 : 6000) : opts.timeout;
    const timer = timeout > 0 ? setTimeout(close, timeout) : 0;
    // At most a handful at a time.
    while (el.toasts.children.length > 5) el.toasts.firstElementChild.remove();
    return box;
  }

  function dismissToast(key) {
    for (const t of el.toasts.querySelectorAll('.toast')) {
      if (t.dataset.key === key) t.remove();
    }
  }

  // ---- start ----

  function bind() {
    el.loginForm.addEventListener('submit', onLogin);
    el.logout.addEventListener('click', () => endSession(''));
    el.conversations.addEventListener('click', onListClick);
    el.conversations.addEventListener('keydown', onListKey);
    el.filterAll.addEventListener('change', onFilter);
    el.filterUnassigned.addEventListener('change', onFilter);
    el.back.addEventListener('click', goBack);
    el.history.addEventListener('scroll', onHistoryScroll, { passive: true });
    el.loadOlder.addEventListener('click', loadOlder);
    el.timeline.addEventListener('click', onTimelineClick);
    el.timeline.addEventListener('load', onMediaLoad, true);
    el.timeline.addEventListener('loadedmetadata', onMediaLoad, true);
    el.timeline.addEventListener('error', onMediaError, true);
    el.composerForm.addEventListener('submit', onComposerSubmit);
    el.composer.addEventListener('keydown', onComposerKey);
    el.templateSelect.addEventListener('change', renderTemplateParams);
    el.templateParams.addEventListener('input', renderTemplatePreview);
    el.templateSend.addEventListener('click', onTemplateSend);
    el.assignSelect.addEventListener('change', onAssignChoice);
    el.assignButton.addEventListener('click', onAssign);
    el.callButton.addEventListener('click', onCall);
    el.videoButton.addEventListener('click', onVideo);
    el.thread.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && el.app.dataset.view === 'thread' && window.matchMedia('(max-width: 47.99rem)').matches) goBack();
    });
    window.addEventListener('online', () => {
      if (!token) return;
      if (!sock.ws) setConn('reconnecting');
      reconnectNow();
    });
    window.addEventListener('offline', () => {
      if (token && pub.connection !== 'connected') setConn('offline');
    });
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible' && token && !sock.ws) reconnectNow();
    });
  }

  function main() {
    bind();
    token = storageGet(KEY_TOKEN) || '';
    let saved = null;
    try {
      saved = JSON.parse(storageGet(KEY_RM) || 'null');
    } catch {
      saved = null;
    }
    if (token && saved && Number.isFinite(Number(saved.id))) {
      me = normalizeRM(saved);
      startSession();
    } else {
      token = '';
      setConn('offline');
      showLogin('');
    }
  }

  main();
})();

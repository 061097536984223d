// Sandbox customer phone.
//
// The page, served at /sandbox/phone, lets a person or a browser test play a
// contact writing to the business over WhatsApp or SMS through the sandbox
// fakes. Settings come from the query (?phone=+91...&channel=sms&name=...),
// else from localStorage (urva-sandbox-phone), else a random +9198111xxxxx
// number on WhatsApp; they are saved to localStorage as they change.
//
// Endpoints (JSON; errors {"error":"..."}):
//   GET  /sandbox/phone/channels   {"channels":["whatsapp","sms"]}: those on
//   GET  /sandbox/phone/messages?phone=&after=N&wait=S
//        {"messages":[entry...],"next":N'}: the number's entries with seq
//        above N, waiting up to S seconds for one. next below after means the
//        server started over: the list is rebuilt.
//   POST /sandbox/phone/send {"phone","channel","name","text"}
//        200 {"entry":entry} once the server acknowledged the message.
// An entry is {seq, phone, channel, direction: from_customer|to_customer,
// type: text|template, text, template: {name, language, params}|null, id, at}.
//
// The list shows every entry of the chosen number, on both channels, each
// labelled; messages are sent on the chosen channel. Each entry is an
// <li class="msg" data-seq data-direction data-channel> in #messages, in seq
// order; messages being sent wait in #outbox until the server answers.
//
// window.urvaPhone = {phone, channel, lastSeq, count, state} is kept current
// for automation: lastSeq is the seq the next poll starts after, count the
// number of entries shown, state one of connecting, live, offline.
'use strict';

(() => {
  const byId = (id) => document.getElementById(id);
  const el = {
    root: document.querySelector('.phone'),
    state: byId('state'),
    settings: byId('settings'),
    phone: byId('phone'),
    phoneError: byId('phone-error'),
    newPhone: byId('new-phone'),
    channel: byId('channel'),
    name: byId('name'),
    chat: byId('chat'),
    empty: byId('empty'),
    messages: byId('messages'),
    outbox: byId('outbox'),
    error: byId('error'),
    errorText: byId('error-text'),
    retry: byId('retry'),
    composer: byId('composer'),
    text: byId('text'),
    send: byId('send'),
  };

  const phone = { phone: '', channel: 'whatsapp', lastSeq: 0, count: 0, state: 'connecting' };
  window.urvaPhone = phone;

  const STORAGE_KEY = 'urva-sandbox-phone';
  const CHANNELS = { whatsapp: 'WhatsApp', sms: 'SMS' };
  const WAIT_SECONDS = 25; // the server's long poll
  const SLACK_MS = 15000; // on top of the wait, before a poll is given up
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const E164 = /^\+[1-9][0-9]{7,14}$/;
  const STATE_TEXT = { connecting: 'Connecting…', live: 'Connected', offline: 'Offline' };

  const shown = new Map(); // seq -> element in #messages
  let generation = 0; // bumped at each restart; an older poll loop stops
  let controller = null; // aborts the poll in flight
  let wakeRetry = null; // ends the wait before the next attempt
  let sending = Promise.resolve(); // sends go one at a time, in order

  // ---- settings ----

  function randomPhone() {
    const b = crypto.getRandomValues(new Uint32Array(1));
    return '+9198111' + String(b[0] % 100000).padStart(5, '0');
  }

  // normalizePhone drops the separators people type; '' when it is no number.
  function normalizePhone(v) {
    let s = String(v || '').trim().replace(/[\s().-]/g, '');
    if (s.startsWith('00')) s = '+' + s.slice(2);
    if (/^[0-9]+$/.test(s)) s = '+' + s;
    return E164.test(s) ? s : '';
  }

  function load() {
    let saved = {};
    try {
      saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || '{}') || {};
    } catch {
      // Storage blocked or spoiled: defaults.
    }
    const q = new URLSearchParams(location.search);
    // A '+' left unescaped in the query reads as a space.
    const qPhone = q.get('phone');
    return {
      phone: normalizePhone(qPhone) || normalizePhone(saved.phone) || randomPhone(),
      channel: q.get('channel') || saved.channel || 'whatsapp',
      name: q.has('name') ? q.get('name') : typeof saved.name === 'string' ? saved.name : 'Sandbox customer',
    };
  }

  function save() {
    try {
      localStorage.setItem(STORAGE_KEY, JSON.stringify({
        phone: phone.phone, channel: phone.channel, name: el.name.value,
      }));
    } catch {
      // Storage blocked: the page works, it just forgets.
    }
  }

  function setChannel(channel) {
    const option = Array.from(el.channel.options).find((o) => o.value === channel && !o.disabled);
    const chosen = option ? channel : (Array.from(el.channel.options).find((o) => !o.disabled) || {}).value;
    if (!chosen) return;
    phone.channel = chosen;
    el.channel.value = chosen;
    el.root.dataset.channel = chosen;
    el.text.placeholder = `${CHANNELS[chosen] || chosen} message`;
  }

  function phoneError(message) {
    el.phoneError.textContent = message;
    el.phoneError.hidden = !message;
    if (message) el.phone.setAttribute('aria-invalid', 'true');
    else el.phone.removeAttribute('aria-invalid');
  }

  // applyPhone switches to the number typed in #phone, if it is one.
  function applyPhone() {
    const n = normalizePhone(el.phone.value);
    if (!n) {
      phoneError('Not a phone number: type + then 8 to 15 digits, e.g. +919811100001.');
      return false;
    }
    phoneError('');
    el.phone.value = n;
    if (n !== phone.phone) {
      phone.phone = n;
      save();
      restart(true);
    }
    return true;
  }

  async function loadChannels() {
    let body = null;
    try {
      const res = await fetch('/sandbox/phone/channels', { cache: 'no-store', credentials: 'same-origin' });
      if (res.ok) body = await res.json();
    } catch {
      // Left as they are; the poll reports the connection.
    }
    if (!body || !Array.isArray(body.channels) || body.channels.length === 0) return;
    for (const o of el.channel.options) {
      o.disabled = !body.channels.includes(o.value);
      o.textContent = CHANNELS[o.value] + (o.disabled ? ' (off)' : '');
    }
    const before = phone.channel;
    setChannel(phone.channel);
    if (phone.channel !== before) save();
  }

  // ---- connection state ----

  function setState(state, detail) {
    phone.state = state;
    el.root.dataset.state = state;
    el.state.dataset.state = state;
    el.state.textContent = (STATE_TEXT[state] || state) + (detail ? ` — ${detail}` : '');
  }

  // ---- the list ----

  const URL_PATTERN = /\bhttps?:\/\/[^\s<>"]+/gi;

  // trimLink drops what ends a sentence rather than the link: trailing
  // punctuation, and closing brackets the link does not open.
  function trimLink(url) {
    const pairs = { ')': '(', ']': '[', '}': '{' };
    for (;;) {
      const c = url.slice(-1);
      if ('.,;:!?\'*_'.includes(c) && c !== '') {
        url = url.slice(0, -1);
      } else if (pairs[c] && url.split(pairs[c]).length < url.split(c).length) {
        url = url.slice(0, -1);
      } else {
        return url;
      }
    }
  }

  // appendLinked appends text to parent with its http(s) links clickable,
  // opening in a new tab.
  function appendLinked(parent, text) {
    let last = 0;
    for (const m of text.matchAll(URL_PATTERN)) {
      const url = trimLink(m[0]);
      let ok = false;
      try {
        const u = new URL(url);
        ok = u.protocol === 'http:' || u.protocol === 'https:';
      } catch {
        // Not a URL after all: plain text.
      }
      if (!ok || url.length < 'http://x'.length) continue;
      parent.append(text.slice(last, m.index));
      const a = document.createElement('a');
      a.href = url;
      a.textContent = url;
      a.target = '_blank';
      a.rel = 'noopener';
      parent.append(a);
      last = m.index + url.length;
    }
    parent.append(text.slice(last));
  }

  function when(at) {
    const d = new Date(at);
    if (Number.isNaN(d.getTime()) || d.getFullYear() < 2000) return null;
    const sameDay = d.toDateString() === new Date().toDateString();
    const opts = sameDay ? { hour: '2-digit', minute: '2-digit' }
      : { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' };
    const t = document.createElement('time');
    t.dateTime = d.toISOString();
    t.title = d.toLocaleString();
    t.textContent = d.toLocaleString([], opts);
    return t;
  }

  function nearBottom() {
    const c = el.chat;
    return c.scrollHeight - c.scrollTop - c.clientHeight < 80;
  }

  function scrollToBottom() {
    el.chat.scrollTop = el.chat.scrollHeight;
  }

  function updateCount() {
    phone.count = shown.size;
    el.empty.hidden = shown.size > 0 || el.outbox.children.length > 0;
  }

  // bubble builds the body of a message: who, channel, text, time.
  function bubble(mine, channel, text, at, extra) {
    const b = document.createElement('div');
    b.className = 'bubble';
    const head = document.createElement('p');
    head.className = 'meta';
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = mine ? 'You' : 'Business';
    const ch = document.createElement('span');
    ch.className = `channel channel-${channel}`;
    ch.textContent = CHANNELS[channel] || channel;
    head.append(who, ' · ', ch);
    if (extra) {
      const x = document.createElement('span');
      x.className = 'kind';
      x.textContent = extra;
      head.append(' · ', x);
    }
    const body = document.createElement('p');
    body.className = 'text';
    appendLinked(body, text);
    b.append(head, body);
    const t = at ? when(at) : null;
    if (t) {
      const foot = document.createElement('p');
      foot.className = 'meta time';
      foot.append(t);
      b.append(foot);
    }
    return b;
  }

  // render shows an entry once, in seq order.
  function render(e) {
    const seq = Number(e && e.seq);
    if (!Number.isSafeInteger(seq) || seq <= 0 || shown.has(seq) || e.phone !== phone.phone) return;
    const mine = e.direction === 'from_customer';
    const li = document.createElement('li');
    li.className = `msg ${mine ? 'mine' : 'theirs'}`;
    li.dataset.seq = String(seq);
    li.dataset.direction = String(e.direction);
    li.dataset.channel = String(e.channel);
    li.dataset.type = String(e.type);
    if (e.id) li.dataset.id = String(e.id);
    li.append(bubble(mine, e.channel, String(e.text || ''), e.at, e.type === 'template' ? 'template' : ''));

    const stick = nearBottom() || mine;
    let before = null;
    for (let node = el.messages.lastElementChild; node; node = node.previousElementSibling) {
      if (Number(node.dataset.seq) > seq) before = node;
      else break;
    }
    el.messages.insertBefore(li, before);
    shown.set(seq, li);
    updateCount();
    if (stick) scrollToBottom();
  }

  function clearList() {
    el.messages.replaceChildren();
    shown.clear();
    phone.lastSeq = 0;
    updateCount();
  }

  // ---- the long poll ----

  function restart(clear) {
    generation++;
    if (controller) controller.abort();
    controller = null;
    if (wakeRetry) wakeRetry();
    if (clear) {
      clearList();
      el.outbox.replaceChildren();
      showError('');
      updateBusy();
      updateCount();
    }
    setState('connecting');
    poll(generation);
  }

  function pause(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        if (wakeRetry === done) wakeRetry = null;
        resolve();
      }
      wakeRetry = done;
    });
  }

  async function poll(gen) {
    let failures = 0;
    let first = true; // the first poll answers at once, to show the state
    while (gen === generation) {
      const wait = first ? 0 : WAIT_SECONDS;
      const after = phone.lastSeq;
      const ctrl = new AbortController();
      controller = ctrl;
      const timer = setTimeout(() => ctrl.abort(), wait * 1000 + SLACK_MS);
      const url = `/sandbox/phone/messages?phone=${encodeURIComponent(phone.phone)}&after=${after}&wait=${wait}`;
      let res = null;
      let body = null;
      try {
        res = await fetch(url, { cache: 'no-store', credentials: 'same-origin', signal: ctrl.signal });
        body = await res.json().catch(() => null);
      } catch {
        // Reported below, unless this loop was stopped.
      } finally {
        clearTimeout(timer);
      }
      if (gen !== generation) return;
      if (res && res.ok && body && Array.isArray(body.messages)) {
        const next = Number(body.next);
        if (Number.isSafeInteger(next) && next < after) clearList(); // the server started over
        for (const e of body.messages) render(e);
        if (Number.isSafeInteger(next)) phone.lastSeq = next;
        failures = 0;
        first = false;
        setState('live');
        continue;
      }
      failures++;
      first = true;
      const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** (failures - 1));
      let why = 'cannot reach the server';
      if (res && res.status === 404) why = 'the sandbox phone is off on this server';
      else if (res) why = (body && typeof body.error === 'string' && body.error) || `error ${res.status}`;
      setState('offline', `${why}; retrying in ${Math.round(delay / 1000)} s`);
      await pause(delay);
    }
  }

  // ---- sending ----

  function showError(message) {
    el.errorText.textContent = message;
    el.error.hidden = !message;
  }

  const items = new WeakMap(); // <li> in #outbox -> its message

  function failedItems() {
    return Array.from(el.outbox.children).filter((li) => li.dataset.state === 'failed').map((li) => items.get(li));
  }

  function updateBusy() {
    const busy = Array.from(el.outbox.children).some((li) => li.dataset.state === 'sending');
    el.send.setAttribute('aria-busy', String(busy));
    el.root.dataset.sending = String(busy);
  }

  function setItem(item, state, note) {
    item.li.dataset.state = state;
    item.li.querySelector('.status').textContent = note;
    item.li.querySelector('.actions').hidden = state !== 'failed';
    updateBusy();
  }

  // queue sends item after those queued before it.
  function queue(item) {
    setItem(item, 'sending', 'Sending…');
    sending = sending.then(() => deliver(item)).catch((e) => console.error('phone: send:', e));
  }

  function retry(item) {
    if (item.li.dataset.state !== 'failed') return;
    queue(item);
    if (failedItems().length === 0) showError('');
  }

  function discard(item) {
    item.li.remove();
    if (!el.text.value) el.text.value = item.text;
    if (failedItems().length === 0) showError('');
    updateBusy();
    updateCount();
    el.text.focus();
  }

  // outgoing shows a message being sent at the bottom of the list.
  function outgoing(item) {
    const li = document.createElement('li');
    li.className = 'pending mine';
    const b = bubble(true, item.channel, item.text, null, '');
    const status = document.createElement('p');
    status.className = 'meta status';
    const actions = document.createElement('p');
    actions.className = 'actions';
    actions.hidden = true;
    const again = document.createElement('button');
    again.type = 'button';
    again.textContent = 'Retry';
    again.addEventListener('click', () => retry(item));
    const drop = document.createElement('button');
    drop.type = 'button';
    drop.className = 'secondary';
    drop.textContent = 'Discard';
    drop.addEventListener('click', () => discard(item));
    actions.append(again, drop);
    b.append(status, actions);
    li.append(b);
    item.li = li;
    items.set(li, item);
    el.outbox.append(li);
    updateCount();
    scrollToBottom();
  }

  async function deliver(item) {
    if (!item.li.isConnected) return; // discarded, or another number now
    let res = null;
    let body = null;
    try {
      res = await fetch('/sandbox/phone/send', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ phone: item.phone, channel: item.channel, name: item.name, text: item.text }),
        cache: 'no-store',
        credentials: 'same-origin',
      });
      body = await res.json().catch(() => null);
    } catch {
      // Reported below.
    }
    if (res && res.ok && body && body.entry) {
      item.li.remove();
      render(body.entry);
      if (failedItems().length === 0) showError('');
      updateBusy();
      updateCount();
      return;
    }
    let why = 'Cannot reach the server.';
    if (res) why = (body && typeof body.error === 'string' && body.error) || `The server answered ${res.status}.`;
    if (!item.li.isConnected) return;
    const stick = nearBottom();
    setItem(item, 'failed', `Not sent: ${why}`);
    showError(`A message was not sent: ${why}`);
    if (stick) scrollToBottom();
  }

  function submit() {
    // As on a phone, the blank lines and spaces around a message go.
    const text = el.text.value.trim();
    if (!text) {
      el.text.focus();
      return;
    }
    if (!applyPhone()) {
      el.phone.focus();
      return;
    }
    const item = { phone: phone.phone, channel: phone.channel, name: el.name.value.trim(), text, li: null };
    el.text.value = '';
    outgoing(item);
    queue(item);
    el.text.focus();
  }

  // ---- start ----

  function main() {
    const s = load();
    phone.phone = s.phone;
    el.phone.value = s.phone;
    el.name.value = s.name;
    setChannel(s.channel);
    save();

    el.settings.addEventListener('submit', (ev) => {
      ev.preventDefault();
      applyPhone();
    });
    el.phone.addEventListener('change', applyPhone);
    el.phone.addEventListener('input', () => phoneError(''));
    el.newPhone.addEventListener('click', () => {
      el.phone.value = randomPhone();
      applyPhone();
    });
    el.channel.addEventListener('change', () => {
      setChannel(el.channel.value);
      save();
      restart(false);
    });
    el.name.addEventListener('change', save);

    el.composer.addEventListener('submit', (ev) => {
      ev.preventDefault();
      submit();
    });
    // Enter sends; Shift+Enter is a new line; Enter that ends an input
    // method's composition is the composition's. The keypress and the line
    // break of an Enter that sent are dropped too, as some synthetic key
    // events insert it whatever keydown did.
    let sentByEnter = false;
    el.text.addEventListener('keydown', (ev) => {
      sentByEnter = false;
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && ev.keyCode !== 229) {
        ev.preventDefault();
        sentByEnter = true;
        submit();
      }
    });
    el.text.addEventListener('keypress', (ev) => {
      if (sentByEnter && ev.key === 'Enter') ev.preventDefault();
    });
    el.text.addEventListener('beforeinput', (ev) => {
      if (sentByEnter && (ev.inputType === 'insertLineBreak' || ev.inputType === 'insertParagraph')) ev.preventDefault();
    });
    el.text.addEventListener('keyup', () => {
      sentByEnter = false;
    });
    el.retry.addEventListener('click', () => {
      for (const item of failedItems()) retry(item);
      showError('');
    });
    window.addEventListener('online', () => {
      if (wakeRetry) wakeRetry();
    });

    loadChannels();
    restart(true);
  }

  main();
})();

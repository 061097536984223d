// Video call page.
//
// The page is served at /v/{id}?t=<link token>. On load it:
//   1. reads the call id from the path and the link token from ?t=;
//   2. takes its peer id from sessionStorage (urva-video-peer-<id>), creating
//      one the first time, so a reload rejoins as the same participant;
//   3. fetches GET /api/video-calls/{id}/ice-servers?token=<t>:
//        200 {"ice_servers":[{"urls":[...],"username","credential"}],
//             "ice_transport_policy":"relay"|"all","ttl":N,...}
//        other statuses {"error":{"code","message"}} (or the flat
//        {"error":message,"code"}): the message is shown and the page stops;
//   4. asks for the camera and the microphone;
//   5. opens the signalling socket ws(s)://<host>/ws/video/{id}?token=<t>&peer=<peer id>.
//
// Signalling (JSON text frames). Server to page:
//   joined {peer_id, others}   in the room; with others 1 an offer follows
//   peer_joined                the other participant (re)joined: this page
//                              makes a new connection and sends the offer
//   offer {sdp}                answered from a new connection
//   answer {sdp}
//   candidate {candidate}      an RTCIceCandidateInit, queued until the
//                              remote description is set
//   peer_left                  the other participant left, maybe to come back
//   ended {reason, duration_seconds}   the call is over; no reconnect
//   error {code, message}      the call cannot be joined; no reconnect
//                              (except code bad_frame: one frame refused)
// Page to server: offer, answer, candidate as above, and hangup.
// A socket that closes without ended or error is reopened with backoff, as
// the same peer; each attempt first checks the link again, which also
// refreshes the TURN credentials.
//
// window.urvaCall = {state, message, peerId, pc} is kept current for
// automation; state is one of loading, waiting, connecting, connected,
// ended, error.
'use strict';

(() => {
  const byId = (id) => document.getElementById(id);
  const el = {
    root: document.querySelector('.call'),
    status: byId('status'),
    message: byId('message'),
    local: byId('local'),
    remote: byId('remote'),
    mute: byId('mute'),
    camera: byId('camera'),
    hangup: byId('hangup'),
  };

  const call = { state: 'loading', message: '', peerId: '', pc: null };
  window.urvaCall = call;

  const STATUS = {
    loading: 'Loading…',
    waiting: 'Waiting',
    connecting: 'Connecting…',
    connected: 'Connected',
    ended: 'Call ended',
    error: 'Cannot join the call',
  };

  const RECONNECT_MIN_MS = 500;
  const RECONNECT_MAX_MS = 10000;
  const HANGUP_WAIT_MS = 5000;

  let callId = '';
  let token = '';
  let iceConfig = null; // {iceServers, iceTransportPolicy}
  let localStream = null;
  let remoteStream = null;
  let ws = null;
  let finished = false; // ended or failed: no reconnect, no media
  let hangingUp = false;
  let reconnectAttempt = 0;
  let reconnectTimer = 0;
  let hangupTimer = 0;
  let clockTimer = 0;
  let connectedAt = 0;
  let offerer = false; // this page made the offer of the current connection
  let remoteCandidates = []; // received before the remote description
  // Local candidates gathered before the offer or answer went out wait for
  // it, so the other side never gets a candidate before the description;
  // null once it went out.
  let localCandidates = null;
  let inbox = Promise.resolve(); // handles server messages one at a time

  // ---- state and rendering ----

  function setState(state, message) {
    call.state = state;
    if (message !== undefined) {
      call.message = message;
      el.message.textContent = message;
    }
    el.root.dataset.state = state;
    renderStatus();
    renderControls();
  }

  function setMessage(message) {
    setState(call.state, message);
  }

  function renderStatus() {
    let text = STATUS[call.state] || call.state;
    if (call.state === 'connected' && connectedAt) {
      text += ' · ' + clock((Date.now() - connectedAt) / 1000);
    }
    el.status.textContent = text;
  }

  function renderControls() {
    const live = !!localStream && !finished;
    el.mute.disabled = !live || localStream.getAudioTracks().length === 0;
    el.camera.disabled = !live || localStream.getVideoTracks().length === 0;
    el.hangup.disabled = !live || hangingUp;
  }

  function clock(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const ss = String(s % 60).padStart(2, '0');
    return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(Number(seconds) || 0));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const parts = [];
    // No-break spaces keep each number with its unit.
    if (h > 0) parts.push(`${h}\u00a0h`);
    if (h > 0 || m > 0) parts.push(`${m}\u00a0min`);
    parts.push(`${s % 60}\u00a0s`);
    return parts.join(' ');
  }

  // ---- the link and the participant ----

  function newId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const h = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  function peerIdFor(id) {
    const key = `urva-video-peer-${id}`;
    let peer = null;
    try {
      peer = sessionStorage.getItem(key);
    } catch {
      // Storage blocked: the page still works, a reload joins as a new peer.
    }
    if (!peer) {
      peer = newId();
      try {
        sessionStorage.setItem(key, peer);
      } catch {
        // See above.
      }
    }
    return peer;
  }

  // fetchIce checks the link and returns {config} or {message, retry}.
  async function fetchIce() {
    const url = `/api/video-calls/${encodeURIComponent(callId)}/ice-servers?token=${encodeURIComponent(token)}`;
    let res;
    try {
      res = await fetch(url, { cache: 'no-store', credentials: 'same-origin' });
    } catch {
      return { retry: true, message: 'Cannot reach the server. Check your internet connection.' };
    }
    let body = null;
    try {
      body = await res.json();
    } catch {
      // Not JSON: reported below.
    }
    if (res.ok && body && Array.isArray(body.ice_servers)) {
      return {
        config: {
          iceServers: body.ice_servers.filter((s) => s && s.urls),
          iceTransportPolicy: body.ice_transport_policy === 'relay' ? 'relay' : 'all',
        },
      };
    }
    // {"error":{"code","message"}}; a flat {"error":message,"code"} is read too.
    const err = body && body.error;
    const message = err && typeof err === 'object' ? err.message : err;
    return {
      retry: false,
      message: (typeof message === 'string' && message) || `The call could not be loaded (error ${res.status}).`,
    };
  }

  // ---- camera and microphone ----

  async function openMedia() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      const e = new Error('no media devices');
      e.name = window.isSecureContext ? 'NotSupportedError' : 'InsecureContext';
      throw e;
    }
    return navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  }

  function mediaError(e) {
    switch (e && e.name) {
      case 'NotAllowedError':
      case 'SecurityError':
        return 'Camera and microphone access was blocked. Allow access for this page in your browser settings, then reload the page.';
      case 'NotFoundError':
      case 'OverconstrainedError':
        return 'No camera or microphone was found. Connect one, then reload the page.';
      case 'NotReadableError':
      case 'AbortError':
        return 'The camera or microphone is in use by another application. Close it, then reload the page.';
      case 'InsecureContext':
        return 'This page must be opened over a secure (https) connection to use the camera.';
      default:
        return 'This browser cannot use the camera and microphone. Try a current version of Chrome, Firefox, Edge or Safari.';
    }
  }

  function stopLocal() {
    if (localStream) {
      for (const t of localStream.getTracks()) t.stop();
    }
    el.local.srcObject = null;
  }

  function toggleMute() {
    const tracks = localStream ? localStream.getAudioTracks() : [];
    if (!tracks.length) return;
    const mute = tracks[0].enabled;
    for (const t of tracks) t.enabled = !mute;
    el.mute.setAttribute('aria-pressed', String(mute));
    el.mute.textContent = mute ? 'Unmute' : 'Mute';
  }

  function toggleCamera() {
    const tracks = localStream ? localStream.getVideoTracks() : [];
    if (!tracks.length) return;
    const off = tracks[0].enabled;
    for (const t of tracks) t.enabled = !off;
    el.camera.setAttribute('aria-pressed', String(off));
    el.camera.textContent = off ? 'Camera on' : 'Camera off';
    el.root.classList.toggle('camera-off', off);
  }

  // ---- signalling socket ----

  function connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/ws/video/${encodeURIComponent(callId)}` +
      `?token=${encodeURIComponent(token)}&peer=${encodeURIComponent(call.peerId)}`;
    const sock = new WebSocket(url);
    ws = sock;
    sock.onmessage = (ev) => {
      if (sock !== ws) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        console.warn('video: ignoring a frame that is not JSON');
        return;
      }
      enqueue(() => handle(msg), msg.type);
    };
    // Queued behind the messages, so an ended or error that came just
    // before the close is handled first.
    sock.onclose = () => {
      enqueue(() => socketClosed(sock), 'close');
    };
  }

  function socketClosed(sock) {
    if (sock !== ws) return;
    ws = null;
    if (finished) return;
    if (hangingUp) {
      finish('ended', 'The call has ended.');
      return;
    }
    scheduleReconnect();
  }

  // enqueue runs fn after everything queued before it; a failure is logged
  // and does not stop the queue.
  function enqueue(fn, what) {
    inbox = inbox.then(fn).catch((e) => console.error('video:', what, e));
  }

  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  }

  function scheduleReconnect() {
    const base = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** reconnectAttempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    reconnectAttempt++;
    // Media already flowing keeps flowing meanwhile; so does the wait.
    const keep = call.state === 'connected' || call.state === 'waiting';
    setState(keep ? call.state : 'connecting', 'Lost the connection to the server. Reconnecting…');
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(reconnect, delay);
  }

  async function reconnect() {
    reconnectTimer = 0;
    if (finished) return;
    const r = await fetchIce();
    if (finished) return;
    if (r.config) {
      iceConfig = r.config;
      connect();
    } else if (r.retry) {
      scheduleReconnect();
    } else {
      fail(r.message);
    }
  }

  async function handle(msg) {
    if (finished || !msg) return;
    switch (msg.type) {
      case 'joined':
        reconnectAttempt = 0;
        if (msg.others > 0) {
          // The other side makes the offer.
          if (call.state === 'connected') setMessage(''); // back after a socket reconnect
          else setState('connecting', 'Connecting to the other participant…');
        } else {
          closePc();
          setState('waiting', 'Waiting for the other participant to join…');
        }
        break;
      case 'peer_joined':
        await startOffer();
        break;
      case 'offer':
        await answerOffer(msg.sdp);
        break;
      case 'answer':
        await takeAnswer(msg.sdp);
        break;
      case 'candidate':
        await addCandidate(msg.candidate);
        break;
      case 'peer_left':
        closePc();
        setState('waiting', 'The other participant left. Waiting for them to come back…');
        break;
      case 'ended':
        finish('ended', endMessage(msg.reason, msg.duration_seconds));
        break;
      case 'error':
        // bad_frame answers one frame the server could not use; the socket
        // stays open and the call goes on.
        if (msg.code === 'bad_frame') {
          console.warn('video: the server refused a frame:', msg.message);
          break;
        }
        fail(msg.message || 'This call cannot be joined.');
        break;
      default:
        // Unknown types are for newer pages.
        break;
    }
  }

  function endMessage(reason, seconds) {
    const why = {
      limit: 'It reached the maximum length of a call.',
      expired: 'The link has expired.',
      left: 'The other participant left and did not come back.',
      aborted: 'The call was interrupted.',
    }[reason];
    const parts = ['The call has ended.'];
    if (why) parts.push(why);
    parts.push(`Duration: ${duration(seconds)}.`);
    return parts.join(' ');
  }

  // ---- the peer connection ----

  function newPc() {
    closePc();
    const pc = new RTCPeerConnection(iceConfig);
    call.pc = pc;
    remoteCandidates = [];
    localCandidates = [];
    pc.onicecandidate = (ev) => {
      if (pc !== call.pc || !ev.candidate) return;
      const c = ev.candidate.toJSON();
      if (localCandidates) localCandidates.push(c);
      else send({ type: 'candidate', candidate: c });
    };
    remoteStream = new MediaStream();
    pc.ontrack = (ev) => {
      if (pc !== call.pc) return;
      const stream = ev.streams[0] || remoteStream;
      if (stream === remoteStream) remoteStream.addTrack(ev.track);
      if (el.remote.srcObject !== stream) el.remote.srcObject = stream;
      playRemote();
    };
    // connectionState is the one to follow; browsers without it have the
    // ICE connection state, which has the same values for what matters here.
    if ('connectionState' in pc) {
      pc.onconnectionstatechange = () => {
        if (pc === call.pc) onPcState(pc.connectionState);
      };
    } else {
      pc.oniceconnectionstatechange = () => {
        if (pc === call.pc) onPcState(pc.iceConnectionState === 'completed' ? 'connected' : pc.iceConnectionState);
      };
    }
    for (const t of localStream.getTracks()) pc.addTrack(t, localStream);
    return pc;
  }

  function closePc() {
    const pc = call.pc;
    if (!pc) return;
    call.pc = null;
    pc.onicecandidate = null;
    pc.ontrack = null;
    pc.onconnectionstatechange = null;
    pc.oniceconnectionstatechange = null;
    pc.close();
    remoteCandidates = [];
    el.remote.srcObject = null;
  }

  function descriptionSent() {
    const queued = localCandidates || [];
    localCandidates = null;
    for (const c of queued) send({ type: 'candidate', candidate: c });
  }

  function onPcState(state) {
    switch (state) {
      case 'connected':
        if (!connectedAt) connectedAt = Date.now();
        if (!clockTimer) clockTimer = setInterval(renderStatus, 1000);
        setState('connected', ws ? '' : call.message);
        break;
      case 'disconnected':
        setState('connecting', 'The connection is unstable. Trying to recover…');
        break;
      case 'failed':
        setState('connecting', 'The connection failed. Trying again…');
        // The offerer starts over with a new connection; the other side
        // answers it from a new one.
        if (offerer) enqueue(startOffer, 'restart');
        break;
      default:
        break;
    }
  }

  async function startOffer() {
    if (finished) return;
    const pc = newPc();
    offerer = true;
    setState('connecting', 'Connecting to the other participant…');
    const offer = await pc.createOffer();
    if (pc !== call.pc) return;
    await pc.setLocalDescription(offer);
    if (pc !== call.pc) return;
    send({ type: 'offer', sdp: pc.localDescription.sdp });
    descriptionSent();
  }

  // Every offer of this protocol comes from a connection the other side has
  // just made (it joined, or its last connection failed), so it is answered
  // from a new connection as well: renegotiating an old one would fail on
  // the new DTLS fingerprint.
  async function answerOffer(sdp) {
    const pc = newPc();
    offerer = false;
    setState('connecting', 'Connecting to the other participant…');
    await pc.setRemoteDescription({ type: 'offer', sdp });
    await flushCandidates(pc);
    const answer = await pc.createAnswer();
    if (pc !== call.pc) return;
    await pc.setLocalDescription(answer);
    if (pc !== call.pc) return;
    send({ type: 'answer', sdp: pc.localDescription.sdp });
    descriptionSent();
  }

  async function takeAnswer(sdp) {
    const pc = call.pc;
    if (!pc || pc.signalingState !== 'have-local-offer') return;
    await pc.setRemoteDescription({ type: 'answer', sdp });
    await flushCandidates(pc);
  }

  async function addCandidate(c) {
    if (!c) return;
    const pc = call.pc;
    if (!pc || !pc.remoteDescription) {
      remoteCandidates.push(c);
      return;
    }
    try {
      await pc.addIceCandidate(c);
    } catch (e) {
      console.warn('video: candidate rejected', e);
    }
  }

  async function flushCandidates(pc) {
    const queued = remoteCandidates;
    remoteCandidates = [];
    for (const c of queued) {
      if (pc !== call.pc) return;
      try {
        await pc.addIceCandidate(c);
      } catch (e) {
        console.warn('video: candidate rejected', e);
      }
    }
  }

  function playRemote() {
    const p = el.remote.play();
    if (!p) return;
    p.catch(() => {
      // Autoplay with sound was refused: the next click or key plays it.
      setMessage('Click anywhere or press a key to hear the other participant.');
      const resume = () => {
        window.removeEventListener('pointerdown', resume);
        window.removeEventListener('keydown', resume);
        el.remote.play().then(() => {
          if (call.state === 'connected') setMessage('');
        }, () => {});
      };
      window.addEventListener('pointerdown', resume);
      window.addEventListener('keydown', resume);
    });
  }

  // ---- the end ----

  function finish(state, message) {
    finished = true;
    clearTimeout(reconnectTimer);
    clearTimeout(hangupTimer);
    clearInterval(clockTimer);
    clockTimer = 0;
    closePc();
    stopLocal();
    const sock = ws;
    ws = null;
    if (sock) sock.close(1000);
    setState(state, message);
  }

  function fail(message) {
    finish('error', message);
  }

  function hangup() {
    if (finished || hangingUp) return;
    hangingUp = true;
    if (ws && ws.readyState === WebSocket.OPEN) {
      send({ type: 'hangup' });
      setMessage('Ending the call…');
      // The server answers with ended; do not wait for ever.
      hangupTimer = setTimeout(() => finish('ended', 'The call has ended.'), HANGUP_WAIT_MS);
    } else {
      finish('ended', 'The call has ended.');
    }
  }

  // ---- start ----

  async function main() {
    el.mute.addEventListener('click', toggleMute);
    el.camera.addEventListener('click', toggleCamera);
    el.hangup.addEventListener('click', hangup);

    const m = /^\/v\/([^/]+)\/?$/.exec(location.pathname);
    token = new URLSearchParams(location.search).get('t') || '';
    try {
      callId = m ? decodeURIComponent(m[1]) : '';
    } catch {
      callId = '';
    }
    if (!callId || !token) {
      fail('This call link is incomplete. Open the whole link you received.');
      return;
    }
    call.peerId = peerIdFor(callId);
    setState('loading', 'Loading the call…');

    const r = await fetchIce();
    if (!r.config) {
      fail(r.message);
      return;
    }
    iceConfig = r.config;

    setState('loading', 'Allow access to your camera and microphone to join the call.');
    try {
      localStream = await openMedia();
    } catch (e) {
      console.warn('video: camera and microphone', e);
      fail(mediaError(e));
      return;
    }
    el.local.srcObject = localStream;
    setState('loading', 'Joining the call…');
    connect();
  }

  main().catch((e) => {
    console.error('video: start', e);
    fail('Something went wrong while starting the call. Reload the page to try again.');
  });
})();

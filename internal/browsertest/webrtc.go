package browsertest

import (
	"fmt"
	"testing"
	"time"
)

// WaitLong bounds waits on the network and media in a page (ICE through
// TURN, the first decoded frames).
const WaitLong = 30 * time.Second

// MediaStats is a script that reads the page's peer connection statistics:
// the inbound video, and the candidate types and transport addresses of the
// selected pair. It reads the statistics of Chromium and Firefox alike.
const MediaStats = `(async () => {
	const pc = window.urvaCall.pc;
	const out = {bytes: 0, frames: 0, local: "", remote: "", localAddr: "", remoteAddr: ""};
	if (!pc) return out;
	const stats = await pc.getStats();
	let pair = null;
	stats.forEach((s) => {
		if (s.type === "inbound-rtp" && s.kind === "video") {
			out.bytes = s.bytesReceived || 0;
			out.frames = s.framesDecoded || 0;
		}
		if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
	});
	// Browsers without transport statistics (older Firefox) flag the pair
	// in use with selected; the last resort is a nominated pair that works.
	if (!pair) stats.forEach((s) => { if (s.type === "candidate-pair" && s.selected === true) pair = s; });
	if (!pair) stats.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
	if (pair) {
		const local = stats.get(pair.localCandidateId) || {};
		const remote = stats.get(pair.remoteCandidateId) || {};
		const addr = (c) => (c.address || c.ip) ? (c.address || c.ip) + ":" + c.port : "";
		out.local = local.candidateType || "";
		out.remote = remote.candidateType || "";
		out.localAddr = addr(local);
		out.remoteAddr = addr(remote);
	}
	return out;
})()`

// MediaSample is what MediaStats returns.
type MediaSample struct {
	Bytes      int64  `json:"bytes"`
	Frames     int64  `json:"frames"`
	Local      string `json:"local"`      // candidate type
	Remote     string `json:"remote"`     // candidate type
	LocalAddr  string `json:"localAddr"`  // address:port
	RemoteAddr string `json:"remoteAddr"` // address:port
}

// CheckVideoRelayed checks, on a page of the video call page (which keeps
// window.urvaCall.pc current), that video arrives on p through the TURN server: two
// samples of the inbound video, the second larger than the first, and relay
// candidates on both ends of the selected pair.
func CheckVideoRelayed(t testing.TB, p *Page) {
	t.Helper()
	checkVideo(t, p, false)
}

// CheckVideoRelayedBetween checks the two pages of one call as
// CheckVideoRelayed does, and that their selected pairs are the two ends of
// one path: the local address of each is the remote address of the other.
//
// Each page's local candidate must be relay. The remote one may be
// peer-reflexive: a browser that receives the other side's connectivity
// checks (here through the TURN server) before its signalled candidate
// learns the address from the checks, and Firefox keeps showing it as
// peer-reflexive once the signalled candidate arrives. The address match
// shows it is the other page's relay candidate.
func CheckVideoRelayedBetween(t testing.TB, a, b *Page) {
	t.Helper()
	checkVideo(t, a, true)
	checkVideo(t, b, true)
	// The pages are sampled one after the other: poll until both show the
	// same path, which they do once the nominated pair is settled.
	deadline := time.NewTimer(WaitLong)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var sa, sb MediaSample
		a.Eval(t, MediaStats, &sa)
		b.Eval(t, MediaStats, &sb)
		if sa.LocalAddr != "" && sb.LocalAddr != "" && sa.LocalAddr == sb.RemoteAddr && sb.LocalAddr == sa.RemoteAddr {
			t.Logf("%s %s (%s) <-> %s %s (%s)", a.Name, sa.LocalAddr, sa.Local, b.Name, sb.LocalAddr, sb.Local)
			return
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("%s and %s: selected pairs are not one path after %s: %+v and %+v", a.Name, b.Name, WaitLong, sa, sb)
		}
	}
}

// checkVideo is CheckVideoRelayed, also accepting a peer-reflexive remote
// candidate when prflx is set.
func checkVideo(t testing.TB, p *Page, prflx bool) {
	t.Helper()
	p.WaitFor(t, `window.urvaCall.state === "connected"`, WaitLong)
	p.WaitFor(t, `(async () => { const s = await `+MediaStats+`; return s.frames > 0 && s.local !== ""; })()`, WaitLong)
	var first, second MediaSample
	p.Eval(t, MediaStats, &first)
	p.WaitFor(t, fmt.Sprintf(`(async () => { const s = await %s; return s.bytes > %d && s.frames > %d; })()`,
		MediaStats, first.Bytes, first.Frames), WaitLong)
	p.Eval(t, MediaStats, &second)
	if second.Bytes <= first.Bytes || second.Frames <= first.Frames {
		t.Fatalf("%s: inbound video not growing: %+v then %+v", p.Name, first, second)
	}
	remoteOK := second.Remote == "relay" || (prflx && second.Remote == "prflx")
	if second.Local != "relay" || !remoteOK {
		t.Fatalf("%s: selected candidate pair %s/%s, want relay/relay (%+v)", p.Name, second.Local, second.Remote, second)
	}
	t.Logf("%s: video in: %+v then %+v", p.Name, first, second)
}

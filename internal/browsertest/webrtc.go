package browsertest

import (
	"fmt"
	"testing"
	"time"
)

// WaitLong bounds waits on the network and media in a page (ICE through
// TURN, the first decoded frames).
const WaitLong = 30 * time.Second

// MediaStats is a script that reads the page's peer connection statistics: the inbound video
// and the candidate types of the selected pair.
const MediaStats = `(async () => {
	const pc = window.urvaCall.pc;
	const out = {bytes: 0, frames: 0, local: "", remote: ""};
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
	if (!pair) stats.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
	if (pair) {
		out.local = (stats.get(pair.localCandidateId) || {}).candidateType || "";
		out.remote = (stats.get(pair.remoteCandidateId) || {}).candidateType || "";
	}
	return out;
})()`

// MediaSample is what MediaStats returns.
type MediaSample struct {
	Bytes  int64  `json:"bytes"`
	Frames int64  `json:"frames"`
	Local  string `json:"local"`
	Remote string `json:"remote"`
}

// CheckVideoRelayed checks, on a page of the video call page (which keeps
// window.urvaCall.pc current), that video arrives on p through the TURN server: two
// samples of the inbound video, the second larger than the first, and relay
// candidates on both ends of the selected pair.
func CheckVideoRelayed(t testing.TB, p *Page) {
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
	if second.Local != "relay" || second.Remote != "relay" {
		t.Fatalf("%s: selected candidate pair %s/%s, want relay/relay (%+v)", p.Name, second.Local, second.Remote, second)
	}
	t.Logf("%s: video in: %+v then %+v", p.Name, first, second)
}

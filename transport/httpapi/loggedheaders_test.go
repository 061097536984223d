package httpapi

import (
	"encoding/json"
	"maps"
	"testing"
)

// headersFrom is what headersJSON's output holds, checked to be JSON.
func headersFrom(t *testing.T, b []byte) map[string]string {
	t.Helper()
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%q is not a JSON object of strings: %v", b, err)
	}
	return m
}

// checkHeaders: headersJSON(kv) holds what json.Marshal of the same map
// holds, and keeps encoding/json's key order.
func checkHeaders(t *testing.T, kv ...string) {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		want[kv[i]] = kv[i+1]
	}
	ref, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	got := headersJSON(kv...)
	if g, w := headersFrom(t, got), headersFrom(t, ref); !maps.Equal(g, w) {
		t.Fatalf("headersJSON(%q) = %s, holding %q; json.Marshal holds %q", kv, got, g, w)
	}
}

func TestHeadersJSON(t *testing.T) {
	if got := string(headersJSON("X-Request-Id", "r1", "Content-Type", "application/json", "User-Agent", "Go")); got !=
		`{"Content-Type":"application/json","User-Agent":"Go","X-Request-Id":"r1"}` {
		t.Errorf("order or form: %s", got)
	}
	for _, v := range []string{"", `"quoted"`, `back\slash`, "nul\x00 and \x1f", "line\nbreak", "<script>&", "नमस्ते 😀",
		"bad \xff utf-8", "\xc3", "\u2028\u2029", `\u0041`} {
		checkHeaders(t, "User-Agent", v, "X-Request-Id", "r")
	}
	if got := string(statusBodies[outcomeProcessed]); got != `{"status":"processed"}` {
		t.Errorf("status body: %s", got)
	}
}

// FuzzHeadersJSON: request headers are the provider's (or anyone's) input;
// whatever they hold, the log row's headers are JSON holding them.
func FuzzHeadersJSON(f *testing.F) {
	f.Add("Go-http-client/1.1", "sha256=abc")
	f.Add("\"\\\x00\xff", "\u2028<>&")
	f.Fuzz(func(t *testing.T, ua, sig string) {
		checkHeaders(t, "User-Agent", ua, "X-Hub-Signature-256", sig, "X-Request-Id", "r1")
	})
}

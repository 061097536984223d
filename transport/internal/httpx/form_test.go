package httpx

import (
	"strings"
	"testing"
)

func TestParseForm(t *testing.T) {
	p, err := ParseForm([]byte("B=2&A=1&A=%E0%A4%A8&&Empty="), 10)
	if err != nil || len(p["A"]) != 2 || p["A"][1] != "न" || p["B"][0] != "2" || p["Empty"][0] != "" {
		t.Fatalf("%v %v", p, err)
	}
	for _, bad := range []string{"A=%zz", "A=%ff", strings.Repeat("a=1&", 11)} {
		if _, err := ParseForm([]byte(bad), 10); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

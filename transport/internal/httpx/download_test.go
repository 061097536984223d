package httpx

import (
	"net/http"
	"testing"
)

func TestOrigin(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"https://graph.facebook.com/v23.0/1", "https://GRAPH.facebook.com:443/x", true},
		{"http://127.0.0.1:8080/a", "http://127.0.0.1:8081/a", false},
		{"https://a.example/x", "http://a.example/x", false},
		{"https://a.example/x", "https://b.a.example/x", false},
	} {
		a, _ := http.NewRequest("GET", tc.a, nil)
		b, _ := http.NewRequest("GET", tc.b, nil)
		if got := Origin(a.URL) == Origin(b.URL); got != tc.same {
			t.Errorf("Origin(%s) == Origin(%s): %v", tc.a, tc.b, got)
		}
	}
}

package twilio

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"urva/persistence"
)

// recorder is an HTTP server that reports the Authorization header of
// every request it got.
type recorder struct {
	*httptest.Server
	auth chan string
}

func newRecorder(t *testing.T, h http.HandlerFunc) *recorder {
	t.Helper()
	r := &recorder{auth: make(chan string, 16)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.auth <- req.Header.Get("Authorization")
		h(w, req)
	}))
	t.Cleanup(r.Close)
	return r
}

const testMediaPath = "/2010-04-01/Accounts/" + testAccount + "/Messages/MM0123456789abcdef0123456789abcdef/Media/ME0123456789abcdef0123456789abcdef"

func readAllClose(t *testing.T, rc io.ReadCloser) string {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

// The MediaUrl on the API host gets basic auth and redirects to the CDN
// (another origin: same host name, another port), which gets no
// credentials.
func TestFetchMediaBasicAuthThenCDNWithout(t *testing.T) {
	cdn := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		io.WriteString(w, "JPEG bytes")
	})
	api := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != testMediaPath {
			http.NotFound(w, r)
			return
		}
		http.Redirect(w, r, cdn.URL+"/media.twiliocdn.com/"+testAccount+"/abc", http.StatusFound)
	})
	c := testClient(t, api.URL, time.Second)
	body, ctype, size, err := c.FetchMedia(context.Background(), persistence.Media{URL: api.URL + testMediaPath, MimeType: "image/png"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAllClose(t, body); got != "JPEG bytes" || ctype != "image/jpeg" || size != int64(len("JPEG bytes")) {
		t.Fatalf("FetchMedia = %q %q %d", got, ctype, size)
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(testAccount+":"+testToken))
	if got := <-api.auth; got != want {
		t.Fatalf("API host got Authorization %q, want %q", got, want)
	}
	if got := <-cdn.auth; got != "" {
		t.Fatalf("CDN got Authorization %q", got)
	}
}

// A MediaUrl on another host is fetched without credentials.
func TestFetchMediaForeignURLWithoutCredentials(t *testing.T) {
	api := newRecorder(t, func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	other := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "audio/amr")
		io.WriteString(w, "amr")
	})
	c := testClient(t, api.URL, time.Second)
	body, ctype, _, err := c.FetchMedia(context.Background(), persistence.Media{URL: other.URL + testMediaPath})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAllClose(t, body); got != "amr" || ctype != "audio/amr" {
		t.Fatalf("FetchMedia = %q %q", got, ctype)
	}
	if got := <-other.auth; got != "" {
		t.Fatalf("foreign host got Authorization %q", got)
	}
}

// A redirect back to the API host carries the credentials again.
func TestFetchMediaRedirectChainCredentialsOnlyOnAPIHost(t *testing.T) {
	var api *recorder
	cdn := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, api.URL+"/final", http.StatusTemporaryRedirect)
	})
	api = newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/final" {
			io.WriteString(w, "done")
			return
		}
		http.Redirect(w, r, cdn.URL+"/hop", http.StatusFound)
	})
	c := testClient(t, api.URL, time.Second)
	body, _, _, err := c.FetchMedia(context.Background(), persistence.Media{URL: api.URL + testMediaPath})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAllClose(t, body); got != "done" {
		t.Fatalf("body %q", got)
	}
	if a1, a2 := <-api.auth, <-api.auth; !strings.HasPrefix(a1, "Basic ") || !strings.HasPrefix(a2, "Basic ") {
		t.Fatalf("API host got %q then %q", a1, a2)
	}
	if got := <-cdn.auth; got != "" {
		t.Fatalf("CDN got Authorization %q", got)
	}
}

func TestFetchMediaErrors(t *testing.T) {
	api := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/loop":
			http.Redirect(w, r, "/loop", http.StatusFound)
		case "/hang":
			<-r.Context().Done()
		default:
			respond(404, `{"code":20404,"message":"The requested resource was not found","status":404}`)(w, r)
		}
	})
	c := testClient(t, api.URL, 100*time.Millisecond)
	for _, tc := range []struct {
		url, want string
	}{
		{"", "no url"},
		{"ftp://example.com/x", "not an http(s) url"},
		{"/relative", "not an http(s) url"},
		{api.URL + testMediaPath, "HTTP 404"},
		{api.URL + "/loop", "redirects"},
		{api.URL + "/hang", "no answer within"},
	} {
		body, _, _, err := c.FetchMedia(context.Background(), persistence.Media{URL: tc.url})
		if err == nil {
			body.Close()
			t.Fatalf("%s: FetchMedia succeeded", tc.url)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q, want it to contain %q", tc.url, err, tc.want)
		}
	}
}

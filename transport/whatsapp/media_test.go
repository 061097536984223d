package whatsapp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"urva/persistence"
)

// mediaServers is a Graph API and a separate download host (as
// lookaside.fbsbx.com is), each recording the requests it got.
type mediaServers struct {
	api, dl       *httptest.Server
	apiGot, dlGot chan *http.Request
}

func newMediaServers(t *testing.T, api, dl http.HandlerFunc) *mediaServers {
	t.Helper()
	m := &mediaServers{apiGot: make(chan *http.Request, 16), dlGot: make(chan *http.Request, 16)}
	m.api = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.apiGot <- r
		api(w, r)
	}))
	t.Cleanup(m.api.Close)
	m.dl = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.dlGot <- r
		dl(w, r)
	}))
	t.Cleanup(m.dl.Close)
	return m
}

// infoFor answers the media id 1234 with a url on the download host.
func (m *mediaServers) infoFor(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v23.0/1234" {
		respond(400, `{"error":{"message":"Unsupported get request.","type":"GraphMethodException","code":100}}`)(w, r)
		return
	}
	b, _ := json.Marshal(map[string]any{
		"messaging_product": "whatsapp", "url": m.dl.URL + "/whatsapp_business/attachments/?mid=1234&ext=99&hash=x",
		"mime_type": "image/jpeg", "sha256": "abc=", "file_size": 5, "id": "1234",
	})
	respond(200, string(b))(w, r)
}

func readAllClose(t *testing.T, rc io.ReadCloser) string {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

func TestFetchMediaInfoThenBytes(t *testing.T) {
	var m *mediaServers
	m = newMediaServers(t, func(w http.ResponseWriter, r *http.Request) { m.infoFor(w, r) },
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "image/jpeg")
			io.WriteString(w, "JFIF!")
		})
	c := testClient(t, m.api.URL, time.Second)
	body, ctype, size, err := c.FetchMedia(context.Background(), persistence.Media{ProviderMediaID: "1234", MimeType: "image/png"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAllClose(t, body); got != "JFIF!" || ctype != "image/jpeg" || size != 5 {
		t.Fatalf("FetchMedia = %q %q %d", got, ctype, size)
	}
	info, dl := <-m.apiGot, <-m.dlGot
	if info.Method != "GET" || info.URL.Path != "/v23.0/1234" || info.Header.Get("Authorization") != "Bearer tok" {
		t.Fatalf("info request: %s %s auth %q", info.Method, info.URL, info.Header.Get("Authorization"))
	}
	if dl.Method != "GET" || dl.URL.Query().Get("mid") != "1234" || dl.Header.Get("Authorization") != "Bearer tok" {
		t.Fatalf("download request: %s %s auth %q", dl.Method, dl.URL, dl.Header.Get("Authorization"))
	}
}

// The download names no content type: the one the API reported is used.
func TestFetchMediaContentTypeFromInfo(t *testing.T) {
	var m *mediaServers
	m = newMediaServers(t, func(w http.ResponseWriter, r *http.Request) { m.infoFor(w, r) },
		func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil // no sniffing either
			io.WriteString(w, "bytes")
		})
	c := testClient(t, m.api.URL, time.Second)
	body, ctype, _, err := c.FetchMedia(context.Background(), persistence.Media{ProviderMediaID: "1234"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAllClose(t, body); got != "bytes" || ctype != "image/jpeg" {
		t.Fatalf("FetchMedia = %q %q", got, ctype)
	}
}

// A redirect from the download host to another origin loses the token.
func TestFetchMediaRedirectDropsToken(t *testing.T) {
	other := make(chan string, 1)
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		other <- r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "video/mp4")
		io.WriteString(w, "movie")
	}))
	t.Cleanup(cdn.Close)
	var m *mediaServers
	m = newMediaServers(t, func(w http.ResponseWriter, r *http.Request) { m.infoFor(w, r) },
		func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, cdn.URL+"/blob", http.StatusFound) })
	c := testClient(t, m.api.URL, time.Second)
	body, ctype, _, err := c.FetchMedia(context.Background(), persistence.Media{ProviderMediaID: "1234"})
	if err != nil {
		t.Fatal(err)
	}
	if got := readAllClose(t, body); got != "movie" || ctype != "video/mp4" {
		t.Fatalf("FetchMedia = %q %q", got, ctype)
	}
	if auth := <-other; auth != "" {
		t.Fatalf("the other origin got Authorization %q", auth)
	}
	if dl := <-m.dlGot; dl.Header.Get("Authorization") != "Bearer tok" {
		t.Fatal("the download host got no token")
	}
}

func TestFetchMediaErrors(t *testing.T) {
	ok := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "x") }
	cases := []struct {
		name    string
		media   persistence.Media
		api, dl http.HandlerFunc
		want    string
	}{
		{"no media id", persistence.Media{URL: "https://example.com/x"}, nil, ok, "no media id"},
		{"graph error", persistence.Media{ProviderMediaID: "999"}, nil, ok, "API error 100 (HTTP 400)"},
		{"expired token", persistence.Media{ProviderMediaID: "1234"},
			respond(401, `{"error":{"message":"Error validating access token","type":"OAuthException","code":190}}`), ok, "API error 190"},
		{"no url", persistence.Media{ProviderMediaID: "1234"}, respond(200, `{"id":"1234"}`), ok, "without a url"},
		{"bad url", persistence.Media{ProviderMediaID: "1234"}, respond(200, `{"url":"ftp://x/y"}`), ok, "unusable url"},
		{"html", persistence.Media{ProviderMediaID: "1234"}, respond(502, `<html>bad gateway</html>`), ok, "HTTP 502"},
		{"download 404", persistence.Media{ProviderMediaID: "1234"}, nil,
			func(w http.ResponseWriter, r *http.Request) { http.Error(w, "gone", http.StatusNotFound) }, "download answered HTTP 404: gone"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var m *mediaServers
			api := tc.api
			if api == nil {
				api = func(w http.ResponseWriter, r *http.Request) { m.infoFor(w, r) }
			}
			m = newMediaServers(t, api, tc.dl)
			c := testClient(t, m.api.URL, time.Second)
			body, _, _, err := c.FetchMedia(context.Background(), tc.media)
			if err == nil {
				body.Close()
				t.Fatal("FetchMedia succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// An API that does not answer is given up after the client timeout.
func TestFetchMediaTimeout(t *testing.T) {
	m := newMediaServers(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, nil)
	c := testClient(t, m.api.URL, 50*time.Millisecond)
	_, _, _, err := c.FetchMedia(context.Background(), persistence.Media{ProviderMediaID: "1234"})
	if err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("FetchMedia error = %v", err)
	}
}

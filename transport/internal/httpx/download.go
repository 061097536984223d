package httpx

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxDownloadRedirects bounds the redirects of a download.
const maxDownloadRedirects = 5

// Downloads is the client provider attachments are downloaded with. It is
// a net/http client because the bytes are streamed to the caller as they
// arrive and downloads may redirect (Twilio's to its CDN); credentials
// (the Authorization header) are sent only to the origin of the first
// request, never to another origin a redirect leads to.
var Downloads = &http.Client{
	Transport: downloadTransport(),
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) > maxDownloadRedirects {
			return fmt.Errorf("more than %d redirects", maxDownloadRedirects)
		}
		if Origin(req.URL) != Origin(via[0].URL) {
			req.Header.Del("Authorization")
		}
		return nil
	},
}

func downloadTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	t.IdleConnTimeout = time.Minute
	return t
}

// Origin is scheme://host:port with the scheme's default port made explicit.
func Origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	return scheme + "://" + strings.ToLower(u.Hostname()) + ":" + port
}

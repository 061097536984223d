package twilio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"urva/persistence"
	"urva/transport/internal/httpx"
)

// An MMS attachment is the MediaUrl{N} of the inbound webhook, a resource
// under the account on the API host. Fetched with the account's HTTP basic
// auth, Twilio answers with a redirect to its CDN, which is followed without
// the credentials.

// FetchMedia downloads the MMS attachment m from its MediaUrl (m.URL). The
// account's credentials are sent only when the URL is on the API's origin
// (scheme, host and port of ClientOptions.APIBase), and never to a host a
// redirect leads to, such as Twilio's CDN. It returns the open body, which
// the caller must close, the download's content type and its size (-1 when
// the answer does not say). The answer's headers must arrive within the
// client timeout; ctx bounds the whole fetch, reading the body included.
func (c *Client) FetchMedia(ctx context.Context, m persistence.Media) (io.ReadCloser, string, int64, error) {
	if m.URL == "" {
		return nil, "", 0, errors.New("twilio media: the attachment has no url")
	}
	u, err := url.Parse(m.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", 0, fmt.Errorf("twilio media: %q is not an http(s) url", snippet([]byte(m.URL)))
	}
	rctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, "", 0, fmt.Errorf("twilio media: %w", err)
	}
	if api, err := url.Parse(c.url); err == nil && httpx.Origin(api) == httpx.Origin(u) {
		req.Header.Set("Authorization", c.auth)
	}
	req.Header.Set("User-Agent", "urva")
	timer := time.AfterFunc(c.timeout, cancel)
	resp, err := httpx.Downloads.Do(req)
	if !timer.Stop() { // the timeout canceled the request
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return nil, "", 0, fmt.Errorf("twilio media: no answer within %s", c.timeout)
	}
	if err != nil {
		cancel()
		return nil, "", 0, fmt.Errorf("twilio media: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		cancel()
		return nil, "", 0, fmt.Errorf("twilio media: HTTP %d: %s", resp.StatusCode, snippet(b))
	}
	return &mediaBody{ReadCloser: resp.Body, done: cancel}, resp.Header.Get("Content-Type"), resp.ContentLength, nil
}

// mediaBody is a download's body; closing it releases its request.
type mediaBody struct {
	io.ReadCloser
	done func()
}

func (b *mediaBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}

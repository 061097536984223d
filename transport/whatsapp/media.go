package whatsapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"urva/persistence"
	"urva/transport/internal/httpx"
)

// Attachments of inbound messages are downloaded in two steps, as the Cloud
// API documents: GET <api_base>/<media id> with the Bearer token answers
// {"url","mime_type","sha256","file_size","id"}, the url being short-lived;
// GET <url> with the same token answers the bytes.

// mediaInfo is the Graph API's answer about one media id.
type mediaInfo struct {
	URL      string     `json:"url"`
	MimeType string     `json:"mime_type"`
	SHA256   string     `json:"sha256"`
	FileSize FlexString `json:"file_size"`
	ID       string     `json:"id"`
}

// Media download limits.
const (
	maxMediaInfoBody = 64 << 10
)

// FetchMedia downloads the attachment m of an inbound message by its media
// id (m.ProviderMediaID): it asks the Graph API for the media's short-lived
// URL, then downloads that URL with the same Bearer token (the token never
// follows a redirect to another origin). It returns the open body, which
// the caller must close, the content type (the download's, else the one the
// API reported) and the size (-1 when the download does not say). Each of
// the two requests must be answered within the client timeout; ctx bounds
// the whole fetch, reading the body included.
func (c *Client) FetchMedia(ctx context.Context, m persistence.Media) (io.ReadCloser, string, int64, error) {
	if m.ProviderMediaID == "" {
		return nil, "", 0, errors.New("whatsapp media: the attachment has no media id")
	}
	info, err := c.mediaInfo(ctx, m.ProviderMediaID)
	if err != nil {
		return nil, "", 0, err
	}
	u, err := url.Parse(info.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, "", 0, fmt.Errorf("whatsapp media %s: the API answered an unusable url %q", m.ProviderMediaID, snippet([]byte(info.URL)))
	}
	resp, done, err := c.mediaGet(ctx, u.String())
	if err != nil {
		return nil, "", 0, fmt.Errorf("whatsapp media %s: download: %w", m.ProviderMediaID, err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		done()
		return nil, "", 0, fmt.Errorf("whatsapp media %s: download answered HTTP %d: %s", m.ProviderMediaID, resp.StatusCode, snippet(b))
	}
	ctype := resp.Header.Get("Content-Type")
	if ctype == "" {
		ctype = info.MimeType
	}
	return &mediaBody{ReadCloser: resp.Body, done: done}, ctype, resp.ContentLength, nil
}

// mediaInfo asks the Graph API about a media id.
func (c *Client) mediaInfo(ctx context.Context, id string) (*mediaInfo, error) {
	resp, done, err := c.mediaGet(ctx, c.apiBase()+"/"+url.PathEscape(id))
	if err != nil {
		return nil, fmt.Errorf("whatsapp media %s: %w", id, err)
	}
	defer done()
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMediaInfoBody))
	if err != nil {
		return nil, fmt.Errorf("whatsapp media %s: reading the API's answer: %w", id, err)
	}
	if resp.StatusCode != http.StatusOK {
		var ae apiError
		if json.Unmarshal(body, &ae) == nil && ae.Error != nil && ae.Error.Code != "" {
			return nil, fmt.Errorf("whatsapp media %s: API error %s (HTTP %d): %s", id, ae.Error.Code, resp.StatusCode, ae.Error.Message)
		}
		return nil, fmt.Errorf("whatsapp media %s: API answered HTTP %d: %s", id, resp.StatusCode, snippet(body))
	}
	var info mediaInfo
	if err := json.Unmarshal(body, &info); err != nil || info.URL == "" {
		return nil, fmt.Errorf("whatsapp media %s: API answered without a url: %s", id, snippet(body))
	}
	return &info, nil
}

// mediaGet sends a GET with the access token, waiting at most the client
// timeout for the answer's headers. done releases the request's context
// once the body is closed.
func (c *Client) mediaGet(ctx context.Context, target string) (*http.Response, func(), error) {
	rctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, target, nil)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("User-Agent", "urva")
	timer := time.AfterFunc(c.timeout, cancel)
	resp, err := httpx.Downloads.Do(req)
	if !timer.Stop() { // the timeout canceled the request
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return nil, nil, fmt.Errorf("no answer within %s", c.timeout)
	}
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return resp, cancel, nil
}

// apiBase is the Graph API base (with its version) the client sends to.
func (c *Client) apiBase() string {
	u := strings.TrimSuffix(c.url, "/messages")
	if i := strings.LastIndexByte(u, '/'); i >= 0 {
		return u[:i]
	}
	return u
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

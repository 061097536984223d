package httpapi_test

// Attachments over the real stack: a contact's image, document and MMS
// through the sandbox providers, fetched back by the RM from
// GET /api/messages/{id}/media/{n}, on SQLite and on MariaDB.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"urva/persistence"
	"urva/persistence/storetest"
	"urva/transport/sandbox"
)

// mediaPath is the attachment URL, with token in the query when not empty.
func mediaPath(id int64, n int, token string) string {
	p := fmt.Sprintf("/api/messages/%d/media/%d", id, n)
	if token != "" {
		p += "?token=" + url.QueryEscape(token)
	}
	return p
}

// requirePNG requires a 200 answer carrying a PNG, shown inline.
func requirePNG(t *testing.T, r response, messageID int64) {
	t.Helper()
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "image/png" {
		t.Fatalf("media: %d %s", r.status, r.header.Get("Content-Type"))
	}
	if _, err := png.Decode(bytes.NewReader(r.body)); err != nil {
		t.Fatalf("media is not a PNG: %v", err)
	}
	for name, want := range map[string]string{
		"Content-Disposition":    fmt.Sprintf(`inline; filename="message-%d-0.png"`, messageID),
		"Cache-Control":          "private, max-age=300",
		"X-Content-Type-Options": "nosniff",
		"Content-Length":         fmt.Sprint(len(r.body)),
	} {
		if got := r.header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") {
		t.Errorf("Content-Security-Policy = %q", csp)
	}
}

func requireStatus(t *testing.T, what string, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: %v, want HTTP %d", what, r, status)
	}
	if r.errorText() == "" {
		t.Fatalf("%s: no JSON error: %v", what, r)
	}
}

// A contact's WhatsApp image reaches the RM, who fetches its bytes (with
// the token in the query or the header); another RM may not; bad paths,
// indexes and tokens are refused.
func TestIntegrationMediaWhatsAppImage(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tokA, tokB, tokS := s.login(s.rmA), s.login(s.rmB), s.login(s.sup)
		ws := s.dial(tokA)
		ws.online()
		ctx, cancel := context.WithTimeout(context.Background(), itGuard)
		defer cancel()
		wamid, err := s.sb.InjectInboundMedia(ctx, "+919811100031", "Photo Sender", "my receipt", sandbox.InboundMedia{})
		if err != nil {
			t.Fatal(err)
		}
		f := ws.next("message")
		if f.Message == nil || f.Message.ProviderMessageID != wamid || f.Message.Type != "image" || f.Message.Text != "my receipt" {
			t.Fatalf("frame: %s", f)
		}
		id := f.Message.ID

		r := s.do("GET", mediaPath(id, 0, tokA), "", nil, nil)
		requirePNG(t, r, id)
		if r2 := s.do("GET", mediaPath(id, 0, ""), tokA, nil, nil); r2.status != http.StatusOK || !bytes.Equal(r2.body, r.body) {
			t.Fatalf("with the header: %d, %d bytes", r2.status, len(r2.body))
		}
		if r2 := s.do("GET", mediaPath(id, 0, tokS), "", nil, nil); r2.status != http.StatusOK || !bytes.Equal(r2.body, r.body) {
			t.Fatalf("supervisor: %d, %d bytes", r2.status, len(r2.body))
		}

		requireStatus(t, "another RM", s.do("GET", mediaPath(id, 0, tokB), "", nil, nil), http.StatusForbidden)
		requireStatus(t, "index 1", s.do("GET", mediaPath(id, 1, tokA), "", nil, nil), http.StatusNotFound)
		requireStatus(t, "unknown message", s.do("GET", mediaPath(id+1000, 0, tokA), "", nil, nil), http.StatusNotFound)
		for _, p := range []string{
			fmt.Sprintf("/api/messages/%d/media/-1", id),
			fmt.Sprintf("/api/messages/%d/media/+0", id),
			fmt.Sprintf("/api/messages/%d/media/99999999999999999999", id),
			fmt.Sprintf("/api/messages/%d/media", id),
			fmt.Sprintf("/api/messages/%d/media/0/x", id),
			fmt.Sprintf("/api/messages/%d/thumb/0", id),
			"/api/messages/0/media/0",
			"/api/messages/abc/media/0",
		} {
			requireStatus(t, p, s.do("GET", p, tokA, nil, nil), http.StatusNotFound)
		}
		for _, bad := range []string{"", "garbage", s.tokens.Issue(s.rmA.ID, persistence.RoleRM, time.Now().Add(-2*time.Hour))} {
			requireStatus(t, "token "+bad, s.do("GET", mediaPath(id, 0, bad), "", nil, nil), http.StatusUnauthorized)
		}
		if r := s.do("POST", mediaPath(id, 0, tokA), "", nil, nil); r.status != http.StatusMethodNotAllowed {
			t.Fatalf("POST: %v", r)
		}

		// A message without attachments has none to fetch.
		m := sent(t, s.sendText(tokA, f.ConversationID, "media-1", "thanks"))
		requireStatus(t, "text message", s.do("GET", mediaPath(m.ID, 0, tokA), "", nil, nil), http.StatusNotFound)
	})
}

// A document injected over the sandbox's HTTP API is served as a download
// under its own (sanitised) filename.
func TestIntegrationMediaWhatsAppDocument(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		data := []byte("%PDF-1.4\n% a statement\n")
		body, _ := json.Marshal(map[string]any{"from": "+919811100034", "name": "Doc Sender", "text": "statement",
			"media": map[string]any{"mime_type": "application/pdf", "filename": `../बिल "march".pdf`, "data": data}})
		if r := s.do("POST", "/sandbox/whatsapp/inbound", "", body, nil); r.status != http.StatusOK {
			t.Fatalf("inject: %v", r)
		}
		f := ws.next("message")
		if f.Message == nil || f.Message.Type != "document" {
			t.Fatalf("frame: %s", f)
		}
		r := s.do("GET", mediaPath(f.Message.ID, 0, tok), "", nil, nil)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/pdf" || !bytes.Equal(r.body, data) {
			t.Fatalf("document: %d %s %q", r.status, r.header.Get("Content-Type"), r.body)
		}
		want := `attachment; filename="___ march.pdf"; filename*=UTF-8''%E0%A4%AC%E0%A4%BF%E0%A4%B2%20march.pdf`
		if got := r.header.Get("Content-Disposition"); got != want {
			t.Fatalf("Content-Disposition = %q, want %q", got, want)
		}
	})
}

// An MMS through the sandbox Twilio: the RM fetches its image (basic auth,
// then the fake's CDN).
func TestIntegrationMediaMMS(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tokA, tokB := s.login(s.rmA), s.login(s.rmB)
		ws := s.dial(tokA)
		ws.online()
		ctx, cancel := context.WithTimeout(context.Background(), itGuard)
		defer cancel()
		sid, err := s.tw.InjectInboundMMS(ctx, "+919811100032", "see attached", sandbox.InboundMedia{})
		if err != nil {
			t.Fatal(err)
		}
		f := ws.next("message")
		if f.Message == nil || f.Message.ProviderMessageID != sid || f.Message.Channel != "sms" || f.Message.Type != "mms" {
			t.Fatalf("frame: %s", f)
		}
		requirePNG(t, s.do("GET", mediaPath(f.Message.ID, 0, tokA), "", nil, nil), f.Message.ID)
		requireStatus(t, "another RM", s.do("GET", mediaPath(f.Message.ID, 0, tokB), "", nil, nil), http.StatusForbidden)
		requireStatus(t, "index 1", s.do("GET", mediaPath(f.Message.ID, 1, tokA), "", nil, nil), http.StatusNotFound)
	})
}

// A media id the provider does not know: 502 with a JSON error.
func TestIntegrationMediaProviderFails(t *testing.T) {
	storetest.ForEach(t, func(t *testing.T, store persistence.Store) {
		s := newStack(t, store)
		tok := s.login(s.rmA)
		ws := s.dial(tok)
		ws.online()
		wamid := s.wamid()
		body := fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{`+
			`"messaging_product":"whatsapp","metadata":{"display_phone_number":%q,"phone_number_id":%q},`+
			`"contacts":[{"profile":{"name":"Gone"},"wa_id":"919811100033"}],`+
			`"messages":[{"from":"919811100033","id":%q,"timestamp":"%d","type":"image",`+
			`"image":{"id":"1999999999999999","mime_type":"image/jpeg","sha256":"x"}}]}}]}]}`,
			itBusinessDigits, itPhoneNumberID, wamid, time.Now().Unix())
		s.mustWebhook([]byte(body))
		f := ws.next("message")
		if f.Message == nil || f.Message.ProviderMessageID != wamid {
			t.Fatalf("frame: %s", f)
		}
		r := s.do("GET", mediaPath(f.Message.ID, 0, tok), "", nil, nil)
		requireStatus(t, "unknown media id", r, http.StatusBadGateway)
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("Content-Type %q", ct)
		}
	})
}

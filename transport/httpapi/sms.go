package httpapi

import (
	"errors"
	"time"

	"github.com/valyala/fasthttp"

	"urva/actors"
	"urva/transport/twilio"
)

// smsForm reads and verifies a Twilio form post. The signature covers the
// public URL Twilio called (http.public_url + path, with or without the
// default port) and every posted parameter. On failure it has answered
// (401 or 400) and returns false; nothing is stored.
func (s *Server) smsForm(c *call) (map[string][]string, []byte, bool) {
	body := c.ctx.Request.Body()
	sig := string(c.ctx.Request.Header.Peek(twilio.SignatureHeader))
	if s.opts.SMSAuthToken == "" {
		c.log.Error().Msg("sms webhook refused: no auth token configured")
		writeError(c.ctx, fasthttp.StatusUnauthorized, "invalid signature")
		return nil, nil, false
	}
	params, err := twilio.ParseForm(body)
	if err != nil {
		// Verify first when we can: an unsigned garbage body is a 401, not a 400.
		if sig == "" {
			writeError(c.ctx, fasthttp.StatusUnauthorized, "missing signature")
			return nil, nil, false
		}
		c.log.Warn().Err(err).Msg("sms webhook malformed")
		writeError(c.ctx, fasthttp.StatusBadRequest, err.Error())
		return nil, nil, false
	}
	err = twilio.VerifyRequest(s.opts.SMSAuthToken, s.opts.PublicURL, string(c.ctx.Path()),
		string(c.ctx.URI().QueryString()), params, sig)
	if err != nil {
		msg := "invalid signature"
		if errors.Is(err, twilio.ErrMissingSignature) {
			msg = "missing signature"
		}
		c.log.Warn().Err(err).Msg("sms webhook signature rejected")
		writeError(c.ctx, fasthttp.StatusUnauthorized, msg)
		return nil, nil, false
	}
	headers := headersJSON(
		twilio.SignatureHeader, sig,
		"Content-Type", string(c.ctx.Request.Header.ContentType()),
		"User-Agent", string(c.ctx.Request.Header.UserAgent()),
		"X-Request-Id", c.id)
	return params, headers, true
}

// smsWebhook takes an inbound SMS: answered with empty TwiML once committed.
func (s *Server) smsWebhook(c *call) {
	defer s.webhookDone(c, WebhookSMS, time.Now())
	params, headers, ok := s.smsForm(c)
	if !ok {
		return
	}
	in, err := twilio.ParseInbound(params)
	if err != nil {
		c.log.Warn().Err(err).Msg("sms webhook malformed")
		writeError(c.ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	if _, ok := s.commitItems(c, rawWebhook{provider: "sms", headers: headers, body: c.ctx.Request.Body()}, []actors.Inbound{in.Inbound()}); ok {
		twiml(c)
	}
}

// smsStatus takes a Twilio status callback for a message we sent.
func (s *Server) smsStatus(c *call) {
	defer s.webhookDone(c, WebhookSMSStatus, time.Now())
	params, headers, ok := s.smsForm(c)
	if !ok {
		return
	}
	st, err := twilio.ParseStatus(params)
	if err != nil {
		c.log.Warn().Err(err).Msg("sms status callback malformed")
		writeError(c.ctx, fasthttp.StatusBadRequest, err.Error())
		return
	}
	var items []actors.Inbound
	if st.Relevant() { // queued, sending, ... are not statuses the RM sees
		items = []actors.Inbound{st.Inbound()}
	}
	if _, ok := s.commitItems(c, rawWebhook{provider: "sms_status", headers: headers, body: c.ctx.Request.Body()}, items); ok {
		twiml(c)
	}
}

func twiml(c *call) {
	c.ctx.SetStatusCode(fasthttp.StatusOK)
	c.ctx.SetContentType("text/xml")
	c.ctx.SetBodyString(twilio.EmptyResponse)
}

package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// The statuses scenario: the WhatsApp delivery statuses of messages RMs sent.
// For every message an RM sends, the Cloud API posts sent, delivered and
// read: on a busy desk most webhooks are statuses, not messages.

// statusesPerSecond sizes the messages sent first: enough for the warm-up
// and the window at this many status webhooks a second (past them the
// statuses repeat, and the server finds them duplicates).
const statusesPerSecond = 12000

var statusNames = [3]string{"sent", "delivered", "read"}

// statusBody is a Cloud API notification with one status: the status
// statusNames[n%3] of the message wamid.OUT<n/3+1>, sent to recipient.
func statusBody(dst []byte, msg int64, status string, recipient string) []byte {
	dst = append(dst, `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"`...)
	dst = append(dst, benchBusiness...)
	dst = append(dst, `","phone_number_id":"`...)
	dst = append(dst, benchPhoneNumberID...)
	dst = append(dst, `"},"statuses":[{"id":"wamid.OUT`...)
	dst = strconv.AppendInt(dst, msg, 10)
	dst = append(dst, `","status":"`...)
	dst = append(dst, status...)
	dst = append(dst, `","timestamp":"`...)
	dst = strconv.AppendInt(dst, time.Now().Unix(), 10)
	dst = append(dst, `","recipient_id":"`...)
	dst = append(dst, strings.TrimPrefix(recipient, "+")...)
	dst = append(dst, `","conversation":{"id":"c`...)
	dst = strconv.AppendInt(dst, msg, 10)
	dst = append(dst, `","origin":{"type":"service"}},"pricing":{"billable":true,"pricing_model":"CBP","category":"service"}}]}}]}]}`...)
	return dst
}

// runStatuses: one RM sends messages to 200 contacts through the REST API
// (the fake provider accepts each with an id), then the generator posts
// their statuses, sent, delivered and read for each message in turn, flat
// out over -conns connections. Afterwards every message whose read was
// acknowledged must be read in the database.
func runStatuses(o *opts) ([]Result, error) {
	d, err := openDesk(o)
	if err != nil {
		return nil, err
	}
	defer d.close()
	srv, token, conv := d.srv, d.token, d.conv
	c, prov := srv.c, srv.prov
	msgs := int64((o.warmup + o.duration).Seconds() * statusesPerSecond / 3)
	prov.mu.Lock()
	prov.recording = true
	prov.mu.Unlock()
	sendStart := time.Now()
	if err := sendReplies(c.addr, token, conv, o.conns, msgs); err != nil {
		return nil, err
	}
	// Every send accepted and its provider id committed.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		n, err := srv.db.count(`SELECT COUNT(*) FROM messages WHERE direction = 'out' AND provider_message_id IS NOT NULL`)
		if err != nil {
			return nil, err
		}
		if n >= msgs {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d sent messages have a provider id after 2 minutes", n, msgs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	prepared := time.Since(sendStart)
	recipients := make([]string, msgs+1)
	for i := int64(1); i <= msgs; i++ {
		if recipients[i] = prov.recipient(i); recipients[i] == "" {
			return nil, fmt.Errorf("the fake provider has no recipient for send %d", i)
		}
	}

	read := make([]atomic.Bool, msgs+1) // messages whose read was acknowledged
	l := webhookLoad(o, c.addr)
	l.body = func(dst []byte, n int64) []byte {
		i := n - 1
		msg := (i/3)%msgs + 1
		return statusBody(dst, msg, statusNames[i%3], recipients[msg])
	}
	l.onAck = func(n int64) {
		if i := n - 1; i%3 == 2 {
			read[(i/3)%msgs+1].Store(true)
		}
	}
	r, cores, rss, dbCores := measured(o, c, l, "statuses-"+o.driver, o.driver == "mysql")
	row := Result{Variant: "WhatsApp sent/delivered/read, " + o.driver, Server: "child: bin/urva serve", Seconds: r.seconds,
		ServerCPU: cores, GenCPU: r.genCPU, DBCPU: dbCores, RSSMB: rss}
	r.fill(&row)
	var acked int64
	for i := range read {
		if read[i].Load() {
			acked++
		}
	}
	// Acknowledged after commit: the count needs no stop first.
	n, err := srv.db.count(`SELECT COUNT(*) FROM messages WHERE direction = 'out' AND status = 'read'`)
	if err != nil {
		return []Result{row}, err
	}
	row.DBCount = n
	row.Note = appendNote(fmt.Sprintf("status webhooks; %d messages sent first (%.1fs), %d contacts; %s", msgs, prepared.Seconds(), len(conv),
		countCheck(n, acked)), row.Note)
	if total := r.okTotal; total > 3*msgs {
		row.Note = appendNote(row.Note, fmt.Sprintf("the last %d statuses repeated earlier ones (duplicates)", total-3*msgs))
	}
	if n < acked {
		return []Result{row}, fmt.Errorf("%d messages whose read was acknowledged are not read in the database", acked-n)
	}
	return []Result{row}, nil
}

// sendReplies sends n RM messages over the REST API, spread over the
// conversations, on conns connections, and waits for every 202.
func sendReplies(addr, token string, conv []int64, conns int, n int64) error {
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: conns, ReadTimeout: 30 * time.Second}
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for {
				i := next.Add(1)
				if i > n || failed.Load() != nil {
					return
				}
				req.Reset()
				req.Header.SetMethod("POST")
				req.SetRequestURI("http://" + addr + "/api/conversations/" + strconv.FormatInt(conv[int(i)%len(conv)], 10) + "/messages")
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.SetContentType("application/json")
				req.SetBodyString(`{"client_msg_id":"st-` + strconv.FormatInt(i, 10) + `","text":"reply ` + strconv.FormatInt(i, 10) + `"}`)
				if err := hc.Do(req, resp); err != nil || resp.StatusCode() != http.StatusAccepted {
					failed.CompareAndSwap(nil, fmt.Sprintf("send %d: %v HTTP %d %.200s", i, err, resp.StatusCode(), resp.Body()))
				}
			}
		}()
	}
	wg.Wait()
	if v := failed.Load(); v != nil {
		return fmt.Errorf("%s", v)
	}
	return nil
}

package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"urva/transport/whatsapp"
)

// Webhook identity of the server under test (whatsapp.* of its config).
const (
	benchAppSecret     = "urva-bench-app-secret"
	benchPhoneNumberID = "100000000000001"
	benchBusiness      = "919800000001"
)

// webhookBody is a Cloud API notification with one text message from the
// contact n (digits 91970xxxxxxx), with a unique id and text.
func webhookBody(dst []byte, contact int, wamid string, text string) []byte {
	from := strconv.Itoa(919700000000 + contact)
	dst = append(dst, `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"`...)
	dst = append(dst, benchBusiness...)
	dst = append(dst, `","phone_number_id":"`...)
	dst = append(dst, benchPhoneNumberID...)
	dst = append(dst, `"},"contacts":[{"profile":{"name":"Contact `...)
	dst = append(dst, from...)
	dst = append(dst, `"},"wa_id":"`...)
	dst = append(dst, from...)
	dst = append(dst, `"}],"messages":[{"from":"`...)
	dst = append(dst, from...)
	dst = append(dst, `","id":"`...)
	dst = append(dst, wamid...)
	dst = append(dst, `","timestamp":"`...)
	dst = strconv.AppendInt(dst, time.Now().Unix(), 10)
	dst = append(dst, `","type":"text","text":{"body":"`...)
	dst = append(dst, text...)
	dst = append(dst, `"}}]}}]}]}`...)
	return dst
}

// load is one run of the webhook generator.
type load struct {
	addr     string // host:port
	path     string
	conns    int
	rate     int // per second; 0 = flat out
	warmup   time.Duration
	duration time.Duration
	contacts int
	sign     bool
	runID    string
	// text, when set, makes the message text (else "m <wamid>").
	text func(seq int64, intended time.Time) string
	// body, when set, makes the whole notification of send seq instead of
	// a message from a contact.
	body func(dst []byte, seq int64) []byte
	// onAck is told of every 2xx webhook, warm-up included.
	onAck func(seq int64)
	// onOK is told of every 2xx webhook in the measured window.
	onOK func(seq int64)
	// atMeasure is called when the measured window starts (after warm-up).
	atMeasure func()
	// window, when set, is told the measured window of intended send times
	// before the first send.
	window func(from, to time.Time)
}

// loadResult is what the generator saw in the measured window.
type loadResult struct {
	sent, ok, errs int64 // in the measured window
	okTotal        int64 // 2xx over the whole run, warm-up included
	seconds        float64
	lat            []time.Duration // response times of the 2xx in the window
	firstErr       string
	genCPU         float64 // this process's CPU seconds per second in the window
	behind         int64   // fixed rate: sends that started over 1 ms late
	dropped        int64   // fixed rate: sends not made (every connection busy)
	batches        string  // the server's group commits in the window (measured)
}

var runSeq atomic.Int64

// run sends webhooks for warmup + duration. With a rate, a pacer releases
// one send per 1/rate and the response time counts from the intended send
// time (a generator or server that falls behind shows in the latency).
func (l *load) run(ctx context.Context) loadResult {
	hc := &fasthttp.HostClient{
		Addr:                l.addr,
		MaxConns:            l.conns,
		MaxIdleConnDuration: time.Minute,
		ReadTimeout:         30 * time.Second,
		WriteTimeout:        30 * time.Second,
		MaxConnWaitTimeout:  30 * time.Second,
	}
	defer hc.CloseIdleConnections()
	if l.runID == "" {
		l.runID = fmt.Sprintf("B%d%d", time.Now().Unix()%100000, runSeq.Add(1))
	}
	if l.contacts <= 0 {
		l.contacts = 1
	}
	start := time.Now()
	measureFrom := start.Add(l.warmup)
	end := measureFrom.Add(l.duration)
	if l.window != nil {
		l.window(measureFrom, end)
	}
	var seq, dropped atomic.Int64
	var tickets chan time.Time
	if l.rate > 0 {
		tickets = make(chan time.Time, l.conns*4)
		go func() {
			defer close(tickets)
			interval := time.Second / time.Duration(l.rate)
			next := start
			for {
				now := time.Now()
				if !now.Before(end) || ctx.Err() != nil {
					return
				}
				if next.After(now) {
					time.Sleep(next.Sub(now))
				}
				// Every send due by now is released, so a slow sleep
				// does not lower the rate.
				// A send that finds every connection busy and the queue full
				// is not made (counted in dropped): the offered rate was not
				// reached, and the run still ends on time.
				for now = time.Now(); !next.After(now) && next.Before(end); next = next.Add(interval) {
					select {
					case tickets <- next:
					default:
						if !next.Before(measureFrom) {
							dropped.Add(1)
						}
					}
				}
			}
		}()
	}
	var cpu0 float64
	cpuTaken := make(chan struct{})
	go func() {
		time.Sleep(time.Until(measureFrom))
		cpu0 = selfCPU()
		if l.atMeasure != nil {
			l.atMeasure()
		}
		close(cpuTaken)
	}()
	type workerOut struct {
		sent, ok, errs, okTotal, behind int64
		lat                             []time.Duration
		firstErr                        string
	}
	outs := make([]workerOut, l.conns)
	var wg sync.WaitGroup
	for w := 0; w < l.conns; w++ {
		wg.Add(1)
		go func(out *workerOut) {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			var body []byte
			for {
				var intended time.Time
				if tickets != nil {
					t, ok := <-tickets
					if !ok {
						return
					}
					intended = t
					if time.Since(t) > time.Millisecond && !t.Before(measureFrom) {
						out.behind++
					}
				} else {
					intended = time.Now()
					if !intended.Before(end) || ctx.Err() != nil {
						return
					}
				}
				n := seq.Add(1)
				wamid := "wamid." + l.runID + "." + strconv.FormatInt(n, 10)
				text := "m " + wamid
				if l.text != nil {
					text = l.text(n, intended)
				}
				if l.body != nil {
					body = l.body(body[:0], n)
				} else {
					body = webhookBody(body[:0], int(n%int64(l.contacts)), wamid, text)
				}
				req.Reset()
				req.Header.SetMethod("POST")
				req.SetRequestURI("http://" + l.addr + l.path)
				req.Header.SetContentType("application/json")
				if l.sign {
					req.Header.Set(whatsapp.SignatureHeader, whatsapp.Sign(benchAppSecret, body))
				}
				req.SetBodyRaw(body)
				err := hc.Do(req, resp)
				done := time.Now()
				good := err == nil && resp.StatusCode() >= 200 && resp.StatusCode() < 300
				if good {
					out.okTotal++
					if l.onAck != nil {
						l.onAck(n)
					}
				}
				if intended.Before(measureFrom) || !intended.Before(end) {
					continue
				}
				out.sent++
				if !good {
					out.errs++
					if out.firstErr == "" {
						if err != nil {
							out.firstErr = err.Error()
						} else {
							out.firstErr = fmt.Sprintf("HTTP %d: %.200s", resp.StatusCode(), resp.Body())
						}
					}
					continue
				}
				out.ok++
				out.lat = append(out.lat, done.Sub(intended))
				if l.onOK != nil {
					l.onOK(n)
				}
			}
		}(&outs[w])
	}
	wg.Wait()
	<-cpuTaken
	elapsed := time.Since(measureFrom)
	var r loadResult
	r.genCPU = (selfCPU() - cpu0) / elapsed.Seconds()
	r.seconds = l.duration.Seconds()
	r.dropped = dropped.Load()
	for _, o := range outs {
		r.sent += o.sent
		r.ok += o.ok
		r.errs += o.errs
		r.okTotal += o.okTotal
		r.behind += o.behind
		r.lat = append(r.lat, o.lat...)
		if r.firstErr == "" {
			r.firstErr = o.firstErr
		}
	}
	return r
}

// percentiles returns p50, p99 and max in milliseconds (sorts lat).
func percentiles(lat []time.Duration) (p50, p99, max float64) {
	if len(lat) == 0 {
		return 0, 0, 0
	}
	slices.Sort(lat)
	at := func(q float64) float64 {
		i := int(q * float64(len(lat)-1))
		return float64(lat[i]) / float64(time.Millisecond)
	}
	return at(0.50), at(0.99), float64(lat[len(lat)-1]) / float64(time.Millisecond)
}

// fill puts the generator's figures into a row.
func (r loadResult) fill(row *Result) {
	row.Seconds = r.seconds
	row.Sent, row.OK, row.Errors = r.sent, r.ok, r.errs
	row.PerSec = float64(r.ok) / r.seconds
	row.P50ms, row.P99ms, row.MaxMs = percentiles(r.lat)
	row.GenCPU = r.genCPU
	if r.firstErr != "" {
		row.Note = appendNote(row.Note, "first error: "+r.firstErr)
	}
	if r.dropped > 0 {
		row.Note = appendNote(row.Note, fmt.Sprintf("%d offered sends not made (all connections busy): offered rate not reached", r.dropped))
	}
	if r.behind > 0 && r.sent > 0 && float64(r.behind)/float64(r.sent) > 0.01 {
		row.Note = appendNote(row.Note, fmt.Sprintf("%.0f%% of sends started >1ms late", 100*float64(r.behind)/float64(r.sent)))
	}
	row.Note = appendNote(row.Note, r.batches)
}

func appendNote(a, b string) string {
	if b == "" {
		return a
	}
	if a == "" {
		return b
	}
	return a + "; " + b
}

// selfCPU is this process's user+system CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return tv(ru.Utime) + tv(ru.Stime)
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/valyala/fasthttp"

	"urva/transport/whatsapp"
)

// dialRM opens an RM live socket, from source address src when not nil.
func dialRM(addr, token string, src net.IP) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 256}
	if src != nil {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 30 * time.Second}
		d.NetDialContext = nd.DialContext
	}
	conn, resp, err := d.Dial("ws://"+addr+"/ws?token="+token, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
		}
		return nil, err
	}
	return conn, nil
}

// seedConversations posts one signed webhook from each of n contacts and
// waits for every 200.
func seedConversations(addr string, n int) error {
	hc := &fasthttp.HostClient{Addr: addr, MaxConns: 16}
	var wg sync.WaitGroup
	var failed atomic.Value
	work := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				body := webhookBody(nil, i, fmt.Sprintf("wamid.seed.%d.%d", time.Now().UnixNano(), i), "hello")
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				req.Header.SetMethod("POST")
				req.SetRequestURI("http://" + addr + "/webhooks/whatsapp")
				req.Header.Set(whatsapp.SignatureHeader, whatsapp.Sign(benchAppSecret, body))
				req.SetBodyRaw(body)
				if err := hc.Do(req, resp); err != nil || resp.StatusCode() != 200 {
					failed.Store(fmt.Sprintf("seed webhook: %v %d %s", err, resp.StatusCode(), resp.Body()))
				}
				fasthttp.ReleaseRequest(req)
				fasthttp.ReleaseResponse(resp)
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	if v := failed.Load(); v != nil {
		return fmt.Errorf("%s", v)
	}
	return nil
}

// conversationIDs lists the RM's conversations (up to 1000).
func conversationIDs(addr, token string) ([]int64, error) {
	req, _ := http.NewRequest("GET", "http://"+addr+"/api/conversations?limit=1000", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Conversations []struct {
			ID int64 `json:"id"`
		} `json:"conversations"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("list conversations (HTTP %d): %w", resp.StatusCode, err)
	}
	ids := make([]int64, len(out.Conversations))
	for i, c := range out.Conversations {
		ids[i] = c.ID
	}
	return ids, nil
}

// rmServer is bin/urva serve on a fresh database with RMs seeded and a
// fake WhatsApp provider: the server of the outbound, e2e and idle scenarios.
type rmServer struct {
	db   *benchDB
	prov *fakeProvider
	c    *child
	toks []string // one session token per seeded RM
}

func startRMServer(o *opts, rms int, ping time.Duration) (*rmServer, error) {
	db, err := newBenchDB(o, o.driver)
	if err != nil {
		return nil, err
	}
	ids, err := db.seedRMs(rms)
	if err != nil {
		db.drop()
		return nil, err
	}
	prov, err := startFakeProvider()
	if err != nil {
		db.drop()
		return nil, err
	}
	c, err := startUrva(o, db.dir, urvaConfig{driver: o.driver, dsn: db.dsn, apiBase: prov.base, ping: ping})
	if err != nil {
		prov.close()
		db.drop()
		return nil, err
	}
	return &rmServer{db: db, prov: prov, c: c, toks: tokens(ids)}, nil
}

func (r *rmServer) close() {
	r.c.stop()
	r.prov.close()
	r.db.drop()
}

// desk is one RM online (its socket read and dropped) with deskConversations
// conversations opened by inbound messages, so that the 24-hour window is
// open and the conversations are the RM's.
type desk struct {
	srv   *rmServer
	ws    *websocket.Conn
	token string
	conv  []int64
}

const deskConversations = 200

func openDesk(o *opts) (*desk, error) {
	srv, err := startRMServer(o, 1, 0)
	if err != nil {
		return nil, err
	}
	d := &desk{srv: srv, token: srv.toks[0]}
	if d.ws, err = dialRM(srv.c.addr, d.token, nil); err != nil {
		srv.close()
		return nil, err
	}
	go func() {
		for {
			if _, _, err := d.ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	if err := seedConversations(srv.c.addr, deskConversations); err != nil {
		d.close()
		return nil, err
	}
	if d.conv, err = conversationIDs(srv.c.addr, d.token); err != nil {
		d.close()
		return nil, err
	}
	if len(d.conv) == 0 {
		d.close()
		return nil, fmt.Errorf("the RM has no conversations after %d inbound messages", deskConversations)
	}
	return d, nil
}

func (d *desk) close() {
	d.ws.Close()
	d.srv.close()
}

// runOutbound: one RM online with conversations open (inbound first, so
// the 24-hour window is open) sends flat out through the REST API; the fake
// provider counts the sends that reach it.
func runOutbound(o *opts) ([]Result, error) {
	d, err := openDesk(o)
	if err != nil {
		return nil, err
	}
	defer d.close()
	c, prov, token, conv := d.srv.c, d.srv.prov, d.token, d.conv
	hc := &fasthttp.HostClient{Addr: c.addr, MaxConns: o.conns, ReadTimeout: 30 * time.Second}
	start := time.Now()
	measureFrom, end := start.Add(o.warmup), start.Add(o.warmup+o.duration)
	var sends0 int64
	var win window
	var cpu0 float64
	go func() {
		time.Sleep(time.Until(measureFrom))
		sends0, win, cpu0 = prov.sends.Load(), startWindow(c.pid()), selfCPU()
	}()
	var seq atomic.Int64
	var ok, errs atomic.Int64
	var firstErr atomic.Value
	lats := make([][]time.Duration, o.conns)
	var wg sync.WaitGroup
	for w := 0; w < o.conns; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			for {
				t0 := time.Now()
				if !t0.Before(end) {
					return
				}
				n := seq.Add(1)
				req.Reset()
				req.Header.SetMethod("POST")
				req.SetRequestURI("http://" + c.addr + "/api/conversations/" + strconv.FormatInt(conv[int(n)%len(conv)], 10) + "/messages")
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.SetContentType("application/json")
				req.SetBodyString(`{"client_msg_id":"bench-` + strconv.FormatInt(n, 10) + `","text":"reply ` + strconv.FormatInt(n, 10) + `"}`)
				err := hc.Do(req, resp)
				if t0.Before(measureFrom) {
					continue
				}
				if err != nil || resp.StatusCode() != http.StatusAccepted {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v HTTP %d %.200s", err, resp.StatusCode(), resp.Body()))
					continue
				}
				ok.Add(1)
				lats[w] = append(lats[w], time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	sends := prov.sends.Load() - sends0
	row := Result{Variant: "REST send -> fake provider, " + o.driver, Server: "child: bin/urva serve", Seconds: o.duration.Seconds()}
	row.ServerCPU = win.cores()
	row.GenCPU = (selfCPU() - cpu0) / time.Since(measureFrom).Seconds()
	row.OK, row.Errors, row.Sent = ok.Load(), errs.Load(), ok.Load()+errs.Load()
	row.Received = sends
	row.PerSec = float64(sends) / o.duration.Seconds()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	row.P50ms, row.P99ms, row.MaxMs = percentiles(all)
	row.RSSMB = float64(procRSS(c.pid())) / (1 << 20)
	row.Note = fmt.Sprintf("per s = provider sends; %.0f REST 202/s; latency = REST 202; %d conns, %d conversations", float64(row.OK)/o.duration.Seconds(), o.conns, len(conv))
	if v := firstErr.Load(); v != nil {
		row.Note = appendNote(row.Note, "first error: "+v.(string))
	}
	return []Result{row}, nil
}

// e2eText is the text of an e2e message: its intended send time.
const e2ePrefix = "e2e "

// runE2E: o.rms RMs on one socket each, webhooks at each fixed rate; the
// latency runs from the intended send time of a webhook to the frame
// carrying its message on an RM's socket.
func runE2E(o *opts) ([]Result, error) {
	var rates []int
	for _, s := range strings.Split(o.rates, ",") {
		if r, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && r > 0 {
			rates = append(rates, r)
		}
	}
	srv, err := startRMServer(o, o.rms, 0)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	c, toks := srv.c, srv.toks

	// Frames are matched to their send time by the text; each socket keeps
	// the latencies it saw, read under mu at the end of each rate.
	var mu sync.Mutex
	var lat []time.Duration
	// fromSend: the same frames' latencies from when the generator actually
	// began the send (after the pacer released it), which leaves out the
	// generator's own lateness.
	var fromSend []time.Duration
	var from, to atomic.Int64 // the measured window of intended send times (unix ns)
	var received atomic.Int64
	marker := []byte(`"text":"` + e2ePrefix)
	conns := make([]*websocket.Conn, 0, len(toks))
	defer func() {
		for _, ws := range conns {
			ws.Close()
		}
	}()
	for _, tok := range toks {
		ws, err := dialRM(c.addr, tok, nil)
		if err != nil {
			return nil, fmt.Errorf("RM socket %d: %w", len(conns), err)
		}
		conns = append(conns, ws)
		go func() {
			for {
				_, b, err := ws.ReadMessage()
				if err != nil {
					return
				}
				now := time.Now().UnixNano()
				i := bytes.Index(b, marker)
				if i < 0 {
					continue
				}
				rest := b[i+len(marker):]
				j := bytes.IndexByte(rest, '"')
				if j < 0 {
					continue
				}
				intended, began, _ := strings.Cut(string(rest[:j]), " ")
				sent, err := strconv.ParseInt(intended, 10, 64)
				if err != nil || sent < from.Load() || sent >= to.Load() {
					continue
				}
				start, err := strconv.ParseInt(began, 10, 64)
				if err != nil {
					continue
				}
				received.Add(1)
				mu.Lock()
				lat = append(lat, time.Duration(now-sent))
				fromSend = append(fromSend, time.Duration(now-start))
				mu.Unlock()
			}
		}()
	}
	// Every contact's conversation is opened first, so that the rates
	// measure messages on open conversations; how fast the server opened
	// them (each a new contact, a new conversation and an assignment) is
	// in the note.
	contacts := max(o.contacts, 2*o.rms)
	seedStart := time.Now()
	if err := seedConversations(c.addr, contacts); err != nil {
		return nil, fmt.Errorf("open conversations: %w", err)
	}
	opening := fmt.Sprintf("%d conversations opened first (%.0f/s, 16 senders)", contacts, float64(contacts)/time.Since(seedStart).Seconds())
	var rows []Result
	for _, rate := range rates {
		from.Store(0) // no frame counts until the window is set
		to.Store(0)
		mu.Lock()
		lat, fromSend = nil, nil
		mu.Unlock()
		received.Store(0)
		l := webhookLoad(o, c.addr)
		// The frames counted are those of the sends the generator counts:
		// its own window of intended send times.
		l.window = func(f, t time.Time) {
			from.Store(f.UnixNano())
			to.Store(t.UnixNano())
		}
		l.rate, l.contacts = rate, contacts
		l.text = func(seq int64, intended time.Time) string {
			// Made just before the send: its second figure is when the
			// send began.
			return e2ePrefix + strconv.FormatInt(intended.UnixNano(), 10) + " " + strconv.FormatInt(time.Now().UnixNano(), 10)
		}
		r, cores, rss, dbCores := measured(o, c, l, fmt.Sprintf("e2e-%s-%d", o.driver, rate), o.driver == "mysql")
		// Frames still on their way.
		deadline := time.Now().Add(5 * time.Second)
		for received.Load() < r.ok && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		row := Result{Variant: fmt.Sprintf("%d/s %s", rate, o.driver), Rate: rate, Server: "child: bin/urva serve", Seconds: o.duration.Seconds()}
		r.fill(&row) // ok/s and response-time figures of the webhooks...
		mu.Lock()
		row.P50ms, row.P99ms, row.MaxMs = percentiles(lat) // ...but the latency is to the socket
		sp50, sp99, _ := percentiles(fromSend)
		mu.Unlock()
		row.Received = received.Load()
		row.ServerCPU, row.RSSMB, row.DBCPU = cores, rss, dbCores
		wp50, wp99, _ := percentiles(r.lat)
		row.Note = appendNote(fmt.Sprintf("%d RMs; latency to RM socket; from the send's actual start p50 %.2f p99 %.2f ms; webhook ack p50 %.2f p99 %.2f ms; %d of %d acked frames seen; %s",
			o.rms, sp50, sp99, wp50, wp99, row.Received, r.ok, opening), row.Note)
		rows = append(rows, row)
		fmt.Fprintln(os.Stderr, "   "+row.line())
	}
	return rows, nil
}

// idlePing is the server's ping interval in the idle scenario: every socket
// is pinged, and answers, a few times before the figure is taken, as a
// connected RM app does every 30 s.
const idlePing = time.Second

// runIdle: o.sockets RM sockets held open from several 127.0.0.x source
// addresses, each answering the server's pings; the server's RSS growth
// per socket.
func runIdle(o *opts) ([]Result, error) {
	n := o.sockets
	limit := int(fdLimit())
	note := ""
	if n > limit-1000 {
		n = limit - 1000
		note = fmt.Sprintf("capped at %d by the open-file limit %d", n, limit)
	}
	const rms = 100
	srv, err := startRMServer(o, rms, idlePing)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	c, toks := srv.c, srv.toks
	pings := newPingCounts(n + rms)
	// One socket per RM first, so that every RM actor exists before the
	// baseline is taken: the figure is then per extra socket.
	var conns []*websocket.Conn
	defer func() {
		for _, ws := range conns {
			ws.Close()
		}
	}()
	for _, t := range toks {
		ws, err := dialRM(c.addr, t, nil)
		if err != nil {
			return nil, err
		}
		pings.answer(ws, len(conns))
		conns = append(conns, ws)
	}
	pings.wait(1, len(conns), time.Minute)
	before := settledRSS(c)
	srcs := o.sources
	if srcs < 1 {
		srcs = 1
	}
	begin := time.Now()
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 4*runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				src := net.IPv4(127, 0, 0, byte(2+i%srcs))
				ws, err := dialRM(c.addr, toks[i%len(toks)], src)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
				} else {
					pings.answer(ws, len(conns))
					conns = append(conns, ws)
				}
				mu.Unlock()
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		mu.Lock()
		stop := firstErr != nil
		mu.Unlock()
		if stop {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	opened := len(conns) - rms
	took := time.Since(begin)
	time.Sleep(3 * time.Second) // the server settles (resume wait, buffers)
	after := procRSS(c.pid())
	pinged := pings.wait(3, len(conns), 2*time.Minute)
	steady := settledRSS(c)
	if o.profile != "" {
		// What the sockets hold: the heap and every goroutine's stack.
		for what, file := range map[string]string{"heap": "idle-heap.pprof", "goroutine": "idle-goroutine.pprof",
			"heap?debug=1": "idle-memstats.txt"} {
			if err := c.pprof(what, filepath.Join(o.profile, file)); err != nil {
				fmt.Fprintf(os.Stderr, "urva-load: %s profile: %v\n", what, err)
			}
		}
	}
	row := Result{Variant: fmt.Sprintf("%d sockets, %d sources, %s", opened, srcs, o.driver), Server: "child: bin/urva serve", OK: int64(opened)}
	if o.sockets > n {
		row.Asked = int64(o.sockets)
	}
	row.RSSMB = float64(after) / (1 << 20)
	if opened > 0 {
		row.PerItemKB = float64(steady-before) / float64(opened) / 1024
	}
	row.RSSMB = float64(steady) / (1 << 20)
	row.Note = appendNote(fmt.Sprintf("%.2f KB RSS per socket settled (RSS %.1f -> %.1f MB), every socket pinged and answering (%s pings, %d answered at least 3); %.2f KB 3 s after the last connect, before any collection (%.1f MB); opened in %.1fs",
		row.PerItemKB, float64(before)/(1<<20), float64(steady)/(1<<20), idlePing, pinged,
		float64(after-before)/float64(max(opened, 1))/1024, float64(after)/(1<<20), took.Seconds()), note)
	if firstErr != nil {
		row.Errors = 1
		row.Note = appendNote(row.Note, "stopped at first error: "+firstErr.Error())
	}
	return []Result{row}, nil
}

// pingCounts counts the server's pings each idle socket answered.
type pingCounts struct{ n []atomic.Int32 }

func newPingCounts(sockets int) *pingCounts { return &pingCounts{n: make([]atomic.Int32, sockets)} }

// answer reads ws on a goroutine of its own, as the RM app does, answering
// each ping with a pong (the library's default) and counting it as socket i.
func (p *pingCounts) answer(ws *websocket.Conn, i int) {
	if i >= len(p.n) {
		return
	}
	ws.SetPingHandler(func(data string) error {
		p.n[i].Add(1)
		return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(10*time.Second))
	})
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
}

// wait returns once each of the first sockets answered at least least pings,
// or after limit; it returns how many had.
func (p *pingCounts) wait(least int32, sockets int, limit time.Duration) int {
	end := time.Now().Add(limit)
	sockets = min(sockets, len(p.n))
	for {
		done := 0
		for i := range sockets {
			if p.n[i].Load() >= least {
				done++
			}
		}
		if done == sockets || time.Now().After(end) {
			return done
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settledRSS is the server's resident memory in a steady state: the runtime
// collects at least every two minutes, shrinks stacks that use less than a
// quarter of their size at each collection, and gives freed pages back to
// the OS in the background. Three collections (as /debug/pprof/heap?gc=1
// runs them) and a pause for that background return stand for an idle
// server some minutes later.
func settledRSS(c *child) int64 {
	for range 3 {
		if err := c.pprof("heap?gc=1", os.DevNull); err != nil {
			fmt.Fprintf(os.Stderr, "urva-load: collect: %v\n", err)
		}
	}
	time.Sleep(5 * time.Second)
	return procRSS(c.pid())
}

package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"urva/internal/proccpu"
	"urva/transport/whatsapp"
)

// Hidden subcommands: the servers of the ceiling and naive scenarios.
const (
	childNoop  = "serve-noop"
	childNaive = "serve-naive"
)

// childServeNoop is the ceiling: a fasthttp handler that reads the request
// and answers 200 without looking at it.
func childServeNoop(args []string) {
	fs := flag.NewFlagSet(childNoop, flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	_ = fs.Parse(args)
	srv := &fasthttp.Server{
		Handler: func(c *fasthttp.RequestCtx) {
			_ = c.PostBody()
			c.SetStatusCode(fasthttp.StatusOK)
			c.SetBodyString("ok")
		},
		Name: "noop",
	}
	go waitSignal(func() { _ = srv.Shutdown() })
	if err := srv.ListenAndServe(*addr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func waitSignal(f func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	<-ch
	f()
}

// naiveNotification is the part of a Cloud API notification the naive
// baseline stores.
type naiveNotification struct {
	Entry []struct {
		Changes []struct {
			Value struct {
				Messages []struct {
					From      string `json:"from"`
					ID        string `json:"id"`
					Timestamp string `json:"timestamp"`
					Type      string `json:"type"`
					Text      struct {
						Body string `json:"body"`
					} `json:"text"`
				} `json:"messages"`
			} `json:"value"`
		} `json:"changes"`
	} `json:"entry"`
}

const naiveTable = "CREATE TABLE IF NOT EXISTS naive_messages (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, " +
	"wamid VARCHAR(191) NOT NULL UNIQUE, sender VARCHAR(32) NOT NULL, type VARCHAR(32) NOT NULL, body MEDIUMTEXT NOT NULL, " +
	"provider_ts BIGINT NOT NULL, created_at DATETIME(6) NOT NULL)"

// childServeNaive is the naive baseline: net/http, encoding/json, the
// signature checked, and one INSERT (autocommit) per message of each
// request before the 200.
func childServeNaive(args []string) {
	fs := flag.NewFlagSet(childNaive, flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	dsn := fs.String("dsn", "", "MySQL DSN")
	_ = fs.Parse(args)
	db, err := sql.Open("mysql", *dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	db.SetMaxOpenConns(16) // the store's default pool
	db.SetMaxIdleConns(16)
	if _, err := db.Exec(naiveTable); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/webhooks/whatsapp", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := whatsapp.VerifySignature(benchAppSecret, body, r.Header.Get(whatsapp.SignatureHeader)); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var n naiveNotification
		if err := json.Unmarshal(body, &n); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, e := range n.Entry {
			for _, c := range e.Changes {
				for _, m := range c.Value.Messages {
					ts, _ := strconv.ParseInt(m.Timestamp, 10, 64)
					_, err := db.ExecContext(r.Context(), "INSERT INTO naive_messages (wamid, sender, type, body, provider_ts, created_at) VALUES (?, ?, ?, ?, ?, ?)",
						m.ID, m.From, m.Type, m.Text.Body, ts, time.Now().UTC())
					if err != nil {
						http.Error(w, err.Error(), http.StatusInternalServerError)
						return
					}
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	})
	srv := &http.Server{Addr: *addr, Handler: mux}
	go waitSignal(func() { _ = srv.Shutdown(context.Background()) })
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// measured runs l against a child, taking the child's CPU over the
// measured window and its RSS at the end.
// measured runs l against c and returns what the generator saw, c's CPU
// cores and RSS, and, when onMySQL, the local database server's CPU cores
// (0 when it is elsewhere).
func measured(o *opts, c *child, l *load, label string, onMySQL bool) (loadResult, float64, float64, float64) {
	var w, dbw window
	db := 0
	if onMySQL {
		db = proccpu.DatabaseServer()
	}
	var prof chan error
	var b0 batchStats
	var t0 time.Time
	urva := c.name == urvaChildName
	l.atMeasure = func() {
		if urva {
			b0, _ = c.batchStats()
			t0 = time.Now()
		}
		w = startWindow(c.pid())
		if db > 0 {
			dbw = startWindow(db)
		}
		if o.profile != "" && c.name == urvaChildName {
			prof = make(chan error, 2)
			go func() { prof <- c.cpuProfile(l.duration, filepath.Join(o.profile, label+".pprof")) }()
			secs := max(1, int(l.duration.Round(time.Second)/time.Second))
			go func() {
				prof <- c.pprof(fmt.Sprintf("allocs?seconds=%d", secs), filepath.Join(o.profile, label+"-allocs.pprof"))
			}()
		}
	}
	r := l.run(context.Background())
	if urva {
		if b, err := c.batchStats(); err == nil {
			r.batches = b.note(b0, time.Since(t0))
		}
	}
	if prof != nil {
		for range 2 {
			if err := <-prof; err != nil {
				fmt.Fprintf(os.Stderr, "urva-load: profile of %s: %v\n", label, err)
			}
		}
	}
	var dbCores float64
	if db > 0 {
		dbCores = dbw.cores()
	}
	return r, w.cores(), float64(procRSS(c.pid())) / (1 << 20), dbCores
}

func webhookLoad(o *opts, addr string) *load {
	return &load{addr: addr, path: "/webhooks/whatsapp", conns: o.conns, rate: o.rate, warmup: o.warmup,
		duration: o.duration, contacts: o.contacts, sign: true}
}

// runCeiling drives the no-op fasthttp server with the same signed webhooks.
func runCeiling(o *opts) ([]Result, error) {
	c, err := startSelf(o, childNoop)
	if err != nil {
		return nil, err
	}
	defer c.stop()
	row := Result{Variant: "no-op fasthttp", Server: "child: urva-load serve-noop"}
	r, cores, rss, _ := measured(o, c, webhookLoad(o, c.addr), "ceiling", false)
	r.fill(&row)
	row.ServerCPU, row.RSSMB = cores, rss
	row.Note = appendNote(fmt.Sprintf("%d conns", o.conns), row.Note)
	return []Result{row}, nil
}

// runIngest: signed webhooks to bin/urva serve on a fresh database, then
// every acknowledged message is looked for in it.
func runIngest(o *opts, driver string) ([]Result, error) {
	db, err := newBenchDB(o, driver)
	if err != nil {
		return nil, err
	}
	defer db.drop()
	prov, err := startFakeProvider()
	if err != nil {
		return nil, err
	}
	defer prov.close()
	c, err := startUrva(o, db.dir, urvaConfig{driver: driver, dsn: db.dsn, apiBase: prov.base})
	if err != nil {
		return nil, err
	}
	row := Result{Variant: driver, Server: "child: bin/urva serve"}
	r, cores, rss, dbCores := measured(o, c, webhookLoad(o, c.addr), "ingest-"+driver, driver == "mysql")
	if err := c.stop(); err != nil {
		return nil, err
	}
	r.fill(&row)
	row.ServerCPU, row.RSSMB, row.DBCPU = cores, rss, dbCores
	row.DBCount, err = db.count("SELECT COUNT(*) FROM messages WHERE direction = 'in'")
	if err != nil {
		return []Result{row}, fmt.Errorf("count: %w", err)
	}
	row.Note = appendNote(fmt.Sprintf("%d conns, %d contacts; %s", o.conns, o.contacts, countCheck(row.DBCount, r.okTotal)), row.Note)
	if row.DBCount < r.okTotal {
		return []Result{row}, fmt.Errorf("%d acknowledged messages missing from the database", r.okTotal-row.DBCount)
	}
	return []Result{row}, nil
}

func countCheck(rows, acked int64) string {
	if rows >= acked {
		return fmt.Sprintf("all %d acked in db", acked)
	}
	return fmt.Sprintf("MISSING %d of %d acked", acked-rows, acked)
}

// runNaive: the same webhooks to the net/http + encoding/json + INSERT
// baseline on a fresh MariaDB database.
func runNaive(o *opts) ([]Result, error) {
	db, err := newBenchDB(o, "mysql")
	if err != nil {
		return nil, err
	}
	defer db.drop()
	c, err := startSelf(o, childNaive, "-dsn", db.dsn)
	if err != nil {
		return nil, err
	}
	row := Result{Variant: "net/http+json+INSERT, mysql", Server: "child: urva-load serve-naive"}
	r, cores, rss, dbCores := measured(o, c, webhookLoad(o, c.addr), "naive", true)
	if err := c.stop(); err != nil {
		return nil, err
	}
	r.fill(&row)
	row.ServerCPU, row.RSSMB, row.DBCPU = cores, rss, dbCores
	row.DBCount, err = db.count("SELECT COUNT(*) FROM naive_messages")
	if err != nil {
		return []Result{row}, fmt.Errorf("count: %w", err)
	}
	row.Note = appendNote(fmt.Sprintf("%d conns; %s", o.conns, countCheck(row.DBCount, r.okTotal)), row.Note)
	return []Result{row}, nil
}

// fakeProvider is a fast fake WhatsApp Cloud API: every send is accepted
// at once with a new message id.
type fakeProvider struct {
	ln    net.Listener
	srv   *fasthttp.Server
	base  string
	sends atomic.Int64
	// to holds the recipient of each send (the n of wamid.OUT<n>), when
	// recording.
	mu        sync.Mutex
	to        map[int64]string
	recording bool
}

// recipient is the "to" of send n ("" when not recorded).
func (p *fakeProvider) recipient(n int64) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.to[n]
}

func startFakeProvider() (*fakeProvider, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &fakeProvider{ln: ln, base: "http://" + ln.Addr().String() + "/v23.0", to: map[int64]string{}}
	p.srv = &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) {
		n := p.sends.Add(1)
		p.mu.Lock()
		if p.recording {
			var send struct {
				To string `json:"to"`
			}
			if json.Unmarshal(c.PostBody(), &send) == nil {
				p.to[n] = send.To
			}
		}
		p.mu.Unlock()
		c.SetContentType("application/json")
		c.SetBodyString(`{"messaging_product":"whatsapp","contacts":[{"input":"x","wa_id":"x"}],"messages":[{"id":"wamid.OUT` + strconv.FormatInt(n, 10) + `"}]}`)
	}}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *fakeProvider) close() { _ = p.srv.Shutdown() }

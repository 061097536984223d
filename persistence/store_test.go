package persistence_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"urva/internal/proccpu"
	"urva/persistence"
	"urva/persistence/storetest"
)

func TestStore(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		storetest.RunConfig(t, func(t *testing.T, adjust func(*persistence.Config)) persistence.Store {
			return storetest.OpenSQLiteConfig(t, adjust)
		})
	})
	t.Run("mysql", func(t *testing.T) {
		storetest.RunConfig(t, func(t *testing.T, adjust func(*persistence.Config)) persistence.Store {
			return storetest.OpenMySQLConfig(t, adjust)
		})
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	log := zerolog.Nop()

	_, err := persistence.Open(ctx, persistence.Config{Driver: "postgres", DSN: "x"}, log)
	if !errors.Is(err, persistence.ErrBadDriver) || !strings.Contains(err.Error(), `"postgres"`) ||
		!strings.Contains(err.Error(), `"sqlite"`) || !strings.Contains(err.Error(), `"mysql"`) {
		t.Fatalf("unknown driver: %v", err)
	}

	// Nothing listens on port 1.
	_, err = persistence.Open(ctx, persistence.Config{Driver: "mysql", DSN: "root@tcp(127.0.0.1:1)/urva?timeout=2s"}, log)
	if err == nil || !strings.Contains(err.Error(), "database unreachable") {
		t.Fatalf("unreachable mysql: %v", err)
	}

	_, err = persistence.Open(ctx, persistence.Config{Driver: "sqlite", DSN: "file::memory:?cache=shared"}, log)
	if err == nil {
		t.Fatal("sqlite URI accepted")
	}
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = persistence.Open(ctx, persistence.Config{Driver: "sqlite", DSN: filepath.Join(blocker, "sub", "urva.db")}, log)
	if err == nil {
		t.Fatal("sqlite under a file opened")
	}
}

func TestSQLiteCreatesDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "urva.db")
	s, err := persistence.Open(context.Background(), persistence.Config{Driver: "sqlite", DSN: path}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

func forEachConfig(t *testing.T, adjust func(*persistence.Config), fn func(t *testing.T, s persistence.Store)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, storetest.OpenSQLiteConfig(t, adjust)) })
	t.Run("mysql", func(t *testing.T) { fn(t, storetest.OpenMySQLConfig(t, adjust)) })
}

type batchReport struct {
	rows int
	err  error
}

func key(n int) persistence.ConversationKey {
	return persistence.ConversationKey{Channel: persistence.ChannelWhatsApp, BusinessNumber: "+15550002222", ContactPhone: fmt.Sprintf("+9197%08d", n)}
}

func inbound(pid string) persistence.WriteItem {
	return persistence.WriteItem{Kind: persistence.ItemInbound, Message: &persistence.Message{ProviderMessageID: pid, Text: "x"}}
}

// stats reads the committer's counters.
func stats(s persistence.Store) persistence.CommitStats {
	return s.(persistence.CommitStatsReader).CommitStats()
}

// submit queues ws and waits for all completions.
func submit(s persistence.Store, ws []*persistence.ConversationWrite) ([]*persistence.WriteResult, []error) {
	res := make([]*persistence.WriteResult, len(ws))
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	wg.Add(len(ws))
	for i, w := range ws {
		s.SubmitConversationWrite(w, func(r *persistence.WriteResult, err error) {
			res[i], errs[i] = r, err
			wg.Done()
		})
	}
	wg.Wait()
	return res, errs
}

// TestBatchClosesWhenWritesPause: with a wait far longer than the test and
// room for 100 writes, five writes queued together still commit: the batch
// closes once no further write comes (committer.go), and holds all five.
func TestBatchClosesWhenWritesPause(t *testing.T) {
	var reports chan batchReport
	forEachConfig(t, func(c *persistence.Config) {
		reports = make(chan batchReport, 16)
		c.BatchMaxRows = 100
		c.BatchMaxWait = time.Hour
		c.OnBatch = func(n int, _ time.Duration, err error) { reports <- batchReport{n, err} }
	}, func(t *testing.T, s persistence.Store) {
		ws := make([]*persistence.ConversationWrite, 5)
		for i := range ws {
			ws[i] = &persistence.ConversationWrite{Key: key(700 + i), Items: []persistence.WriteItem{inbound(fmt.Sprint("wamid.P", i))}}
		}
		done := make(chan []error, 1)
		go func() { _, errs := submit(s, ws); done <- errs }()
		select {
		case errs := <-done:
			for i, err := range errs {
				if err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
			}
		case <-time.After(time.Minute):
			t.Fatal("five writes not committed a minute later: the batch waited for BatchMaxWait")
		}
		rows := 0
		for rows < len(ws) {
			r := <-reports
			if r.err != nil {
				t.Fatal(r.err)
			}
			rows += r.rows
		}
		if rows != len(ws) {
			t.Fatalf("batches held %d writes, want %d", rows, len(ws))
		}
	})
}

// TestGroupCommitBatches makes batch boundaries deterministic (8 rows, a wait
// far longer than the test) and checks that each round of 8 writes is one
// transaction, including the round with a write that fails half-way.
func TestGroupCommitBatches(t *testing.T) {
	const rows = 8
	var reports chan batchReport
	adjust := func(c *persistence.Config) {
		c.BatchMaxRows = rows
		c.BatchMaxWait = time.Hour
		c.BatchWaitFull = true
		c.OnBatch = func(n int, _ time.Duration, err error) { reports <- batchReport{n, err} }
	}
	forEachConfig(t, func(c *persistence.Config) { reports = make(chan batchReport, 16); adjust(c) }, func(t *testing.T, s persistence.Store) {
		next := 0
		fill := func(ws []*persistence.ConversationWrite) []*persistence.ConversationWrite {
			for len(ws) < rows {
				next++
				ws = append(ws, &persistence.ConversationWrite{Key: key(next), Items: []persistence.WriteItem{inbound(fmt.Sprint("wamid.F", next))}})
			}
			return ws
		}
		expect := func(wantErr bool) {
			t.Helper()
			r := <-reports
			if r.rows != rows || (r.err != nil) != wantErr {
				t.Fatalf("batch report %+v, want %d rows, error %v", r, rows, wantErr)
			}
			select {
			case r := <-reports:
				t.Fatalf("unexpected second batch %+v", r)
			default:
			}
		}

		// Round 1: a conversation with two queued outbound messages.
		x := &persistence.ConversationWrite{Key: key(0), Items: []persistence.WriteItem{
			{Kind: persistence.ItemOutbound, Message: &persistence.Message{ClientMsgID: "1", Text: "a"}},
			{Kind: persistence.ItemOutbound, Message: &persistence.Message{ClientMsgID: "2", Text: "b"}}}}
		res, errs := submit(s, fill([]*persistence.ConversationWrite{x}))
		expect(false)
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		conv := res[0].Conversation
		m1, m2 := res[0].Items[0].Message.ID, res[0].Items[1].Message.ID

		// Round 2: the provider accepts the first one.
		_, errs = submit(s, fill([]*persistence.ConversationWrite{{ConversationID: conv.ID, LastSeq: 2, Items: []persistence.WriteItem{
			{Kind: persistence.ItemProviderAccepted, Status: &persistence.StatusChange{MessageID: m1, ProviderMessageID: "wamid.ONE"}}}}}))
		expect(false)
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}

		// Round 3, one batch: a write that stores a message and then claims
		// the first message's provider id for the second (unique key), a
		// stale write, and good writes.
		bad := &persistence.ConversationWrite{ConversationID: conv.ID, LastSeq: 2, Items: []persistence.WriteItem{
			inbound("wamid.HALF"),
			{Kind: persistence.ItemProviderAccepted, Status: &persistence.StatusChange{MessageID: m2, ProviderMessageID: "wamid.ONE"}}}}
		stale := &persistence.ConversationWrite{ConversationID: conv.ID, LastSeq: 1, Items: []persistence.WriteItem{inbound("wamid.STALE")}}
		_, errs = submit(s, fill([]*persistence.ConversationWrite{bad, stale}))
		expect(true)
		if errs[0] == nil || errors.Is(errs[0], persistence.ErrSeqTaken) {
			t.Fatalf("bad write: %v", errs[0])
		}
		if !errors.Is(errs[1], persistence.ErrSeqTaken) {
			t.Fatalf("stale write: %v", errs[1])
		}
		for i, err := range errs[2:] {
			if err != nil {
				t.Fatalf("good write %d: %v", i, err)
			}
		}
		ctx := context.Background()
		if _, err := s.MessageByProviderID(ctx, "wamid.HALF"); !errors.Is(err, persistence.ErrNotFound) {
			t.Fatalf("half-done write left a message: %v", err)
		}
		c, err := s.ConversationByID(ctx, conv.ID)
		if err != nil || c.LastSeq != 2 {
			t.Fatalf("conversation %+v %v", c, err)
		}

		// Close commits a partial batch at once instead of waiting an hour.
		done := make(chan error, 1)
		s.SubmitConversationWrite(&persistence.ConversationWrite{Key: key(999)}, func(_ *persistence.WriteResult, err error) { done <- err })
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if r := <-reports; r.rows != 1 || r.err != nil {
			t.Fatalf("drain batch %+v", r)
		}
	})
}

// TestMySQLRecoversAfterOutage: while the database is unreachable, writes
// fail promptly with ErrUnavailable; when it is back, the same store works
// again without a restart.
func TestMySQLRecoversAfterOutage(t *testing.T) {
	p, cfg := storetest.NewMySQLProxy(t)
	ctx := context.Background()
	s, err := persistence.Open(ctx, persistence.Config{Driver: "mysql", DSN: cfg.FormatDSN()}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{Key: key(1), Items: []persistence.WriteItem{inbound("wamid.UP1")}})
	if err != nil {
		t.Fatal(err)
	}

	p.Down()
	_, err = s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: res.Conversation.ID, LastSeq: 1,
		Items: []persistence.WriteItem{inbound("wamid.DOWN")}})
	if !errors.Is(err, persistence.ErrUnavailable) {
		t.Fatalf("write while down: %v, want ErrUnavailable", err)
	}
	if _, err := s.LogWebhook(ctx, &persistence.WebhookLog{Provider: "whatsapp"}); !errors.Is(err, persistence.ErrUnavailable) {
		t.Fatalf("log while down: %v", err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Fatal("ping while down succeeded")
	}

	p.Up()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after recovery: %v", err)
	}
	res, err = s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: res.Conversation.ID, LastSeq: 1,
		Items: []persistence.WriteItem{inbound("wamid.UP2")}})
	if err != nil || res.Conversation.LastSeq != 2 {
		t.Fatalf("write after recovery: %+v %v", res, err)
	}
	if _, err := s.MessageByProviderID(ctx, "wamid.DOWN"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("failed write stored: %v", err)
	}
}

// TestMySQLConnectionCutBetweenBatches: the committer keeps its connection
// from batch to batch (script.go, connHold), so a connection the network
// cut between two batches is found dead by the next batch, not by the
// pool's check. That write is still committed, once, without an error.
func TestMySQLConnectionCutBetweenBatches(t *testing.T) {
	p, cfg := storetest.NewMySQLProxy(t)
	s := storetest.OpenMySQLConfig(t, func(c *persistence.Config) { c.DSN = cfg.FormatDSN() })
	ctx := context.Background()
	res, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{Key: key(1), Items: []persistence.WriteItem{inbound("wamid.CUT1")}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 4; i++ {
		p.Down() // every connection closed, the held one with them
		p.Up()
		id := fmt.Sprintf("wamid.CUT%d", i)
		res, err = s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: res.Conversation.ID, LastSeq: int64(i - 1),
			Items: []persistence.WriteItem{inbound(id)}})
		if err != nil || res.Conversation.LastSeq != int64(i) {
			t.Fatalf("write %d after the cut: %+v %v", i, res, err)
		}
		if _, err := s.MessageByProviderID(ctx, id); err != nil {
			t.Fatalf("%s not stored: %v", id, err)
		}
	}
}

// benchStore opens a store of driver for a benchmark; report adds the
// batches' size and duration to the benchmark's metrics and, when a
// MariaDB or MySQL server runs on this machine (taken to be the one the
// benchmark uses), the CPU it spent per write ("db-µs/write"; everything
// that server did meanwhile counts). SQLite's work is in the benchmark's
// own process.
func benchStore(b *testing.B, driver string) (s persistence.Store, report func()) {
	var batches, rows, busy atomic.Int64
	adjust := func(c *persistence.Config) {
		c.OnBatch = func(n int, d time.Duration, _ error) { batches.Add(1); rows.Add(int64(n)); busy.Add(int64(d)) }
	}
	db := 0
	if driver == persistence.DriverSQLite {
		s = storetest.OpenSQLiteConfig(b, adjust)
	} else {
		s = storetest.OpenMySQLConfig(b, adjust)
		db = proccpu.DatabaseServer()
	}
	dbCPU := proccpu.Seconds(db)
	return s, func() {
		if n := batches.Load(); n > 0 {
			b.ReportMetric(float64(rows.Load())/float64(n), "writes/batch")
			b.ReportMetric(float64(busy.Load())/float64(n)/1e6, "ms/batch")
		}
		if db != 0 && rows.Load() > 0 {
			b.ReportMetric((proccpu.Seconds(db)-dbCPU)/float64(rows.Load())*1e6, "db-µs/write")
		}
	}
}

// BenchmarkGroupCommit: many goroutines, each applying one-inbound-message
// writes to its own conversation and waiting for the commit, as webhook
// handlers do.
func BenchmarkGroupCommit(b *testing.B) {
	benchInboundWrites(b, func(_ persistence.ConversationKey, g, i int) persistence.WriteItem {
		return inbound(fmt.Sprintf("wamid.B%d.%d", g, i))
	})
}

// BenchmarkWebhookCommit: as BenchmarkGroupCommit, with what a WhatsApp
// webhook of one text message writes: the message with its payload, its
// event, the conversation's new state and the raw webhook's log row
// (headers and body as the load generator sends them). It is the
// committer's rate for the ingest scenario's writes with no HTTP, actors or
// generator in the way, and, with a local MariaDB, what the database spends
// on each ("db-µs/write").
func BenchmarkWebhookCommit(b *testing.B) {
	benchInboundWrites(b, func(k persistence.ConversationKey, g, i int) persistence.WriteItem {
		wamid := fmt.Sprintf("wamid.W%d.%d", g, i)
		payload := `{"from":"` + k.ContactPhone + `","id":"` + wamid + `","timestamp":"1795564357","type":"text","text":{"body":"m ` + wamid + `"}}`
		body := `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"` +
			k.BusinessNumber + `","phone_number_id":"100000000000001"},"contacts":[{"profile":{"name":"Contact"},"wa_id":"` + k.ContactPhone + `"}],"messages":[` + payload + `]}}]}]}`
		now := time.Now()
		return persistence.WriteItem{Kind: persistence.ItemInbound,
			Message: &persistence.Message{ProviderMessageID: wamid, Type: "text", Text: "m " + wamid,
				Payload: json.RawMessage(payload), ProviderTimestamp: now.Truncate(time.Second)},
			Log: &persistence.WebhookLog{Provider: "whatsapp", Path: "/webhooks/whatsapp",
				Headers: json.RawMessage(`{"Content-Type":"application/json","User-Agent":"fasthttp","X-Hub-Signature-256":"sha256=1d1e5315565a1d158a30c0ea13d8ee3ef649824c7cd94725d8582ac5b02f6438","X-Request-Id":"7e377094db63-294"}`),
				Body:    []byte(body), ReceivedAt: now}}
	})
}

// benchInboundWrites runs, on each driver, goroutine g applying item(key(g),
// g, i) to its own conversation, one write at a time, each waiting for its
// commit; it reports writes per second.
func benchInboundWrites(b *testing.B, item func(k persistence.ConversationKey, g, i int) persistence.WriteItem) {
	for _, driver := range []string{persistence.DriverSQLite, persistence.DriverMySQL} {
		b.Run(driver, func(b *testing.B) {
			s, report := benchStore(b, driver)
			runParallel(b, "writes/s", func(g int, pb *testing.PB) error {
				ctx := context.Background()
				var id, seq int64
				k := key(g)
				for i := 0; pb.Next(); i++ {
					it := item(k, g, i)
					res, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: id, Key: k, LastSeq: seq,
						Items: []persistence.WriteItem{it}})
					if err != nil {
						return err
					}
					if r := res.Items[0]; r.Message == nil || r.Event == nil || (it.Log != nil && r.LogID == 0) {
						return fmt.Errorf("write %d of goroutine %d: message, event or log row missing from %+v", i, g, r)
					}
					id, seq = res.Conversation.ID, res.Conversation.LastSeq
				}
				return nil
			})
			report()
		})
	}
}

// BenchmarkOutboundLifecycle: many goroutines, each sending RM messages in
// its own conversation as the conversation actor does: the queued message,
// the provider's id, then the provider's sent, delivered and read statuses,
// each write waiting for its commit. Reports messages (five writes each)
// per second.
func BenchmarkOutboundLifecycle(b *testing.B) {
	for _, driver := range []string{persistence.DriverSQLite, persistence.DriverMySQL} {
		b.Run(driver, func(b *testing.B) {
			s, report := benchStore(b, driver)
			runParallel(b, "msgs/s", func(g int, pb *testing.PB) error {
				ctx := context.Background()
				var id, seq int64
				write := func(items ...persistence.WriteItem) (*persistence.WriteResult, error) {
					res, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: id, Key: key(5000 + g), LastSeq: seq, Items: items})
					if err == nil {
						id, seq = res.Conversation.ID, res.Conversation.LastSeq
					}
					return res, err
				}
				for i := 0; pb.Next(); i++ {
					res, err := write(persistence.WriteItem{Kind: persistence.ItemOutbound,
						Message: &persistence.Message{ClientMsgID: fmt.Sprintf("c%d.%d", g, i), Text: "reply"}})
					if err != nil {
						return err
					}
					pid := fmt.Sprintf("wamid.OUT%d.%d", g, i)
					if _, err := write(persistence.WriteItem{Kind: persistence.ItemProviderAccepted,
						Status: &persistence.StatusChange{MessageID: res.Items[0].Message.ID, ProviderMessageID: pid}}); err != nil {
						return err
					}
					for _, st := range []string{persistence.StatusSent, persistence.StatusDelivered, persistence.StatusRead} {
						if _, err := write(persistence.WriteItem{Kind: persistence.ItemStatus,
							Status: &persistence.StatusChange{ProviderMessageID: pid, Status: st, Raw: json.RawMessage(`{"status":"` + st + `"}`)}}); err != nil {
							return err
						}
					}
				}
				return nil
			})
			report()
		})
	}
}

// runParallel runs body on 32 goroutines per CPU, each with a number g of
// its own, and reports b.N per second as unit.
func runParallel(b *testing.B, unit string, body func(g int, pb *testing.PB) error) {
	var next atomic.Int64
	var failed atomic.Value
	b.SetParallelism(32)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		if err := body(int(next.Add(1)), pb); err != nil {
			failed.Store(err)
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
}

// TestBatchFallsBackToSingleWrites: a write that fails with an error that is
// not its data's fault (here: a table missing) aborts the batch; every write
// is then retried in its own transaction, and only that one fails.
func TestBatchFallsBackToSingleWrites(t *testing.T) {
	var reports chan batchReport
	adjust := func(c *persistence.Config) {
		reports = make(chan batchReport, 16)
		c.BatchMaxRows = 4
		c.BatchMaxWait = time.Hour
		c.BatchWaitFull = true
		c.OnBatch = func(n int, _ time.Duration, err error) { reports <- batchReport{n, err} }
	}
	forEachConfig(t, adjust, func(t *testing.T, s persistence.Store) {
		ws := func(tag string) []*persistence.ConversationWrite {
			var out []*persistence.ConversationWrite
			for i := 0; i < 4; i++ {
				out = append(out, &persistence.ConversationWrite{Key: key(i), Items: []persistence.WriteItem{inbound(fmt.Sprint("wamid.", tag, i))}})
			}
			return out
		}
		res, errs := submit(s, ws("A"))
		if r := <-reports; r.rows != 4 || r.err != nil {
			t.Fatalf("first batch %+v", r)
		}
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		breakStatusHistory(t, s)
		batch := ws("B")
		for i, w := range batch {
			w.ConversationID, w.LastSeq = res[i].Conversation.ID, 1
		}
		// The third write also reports a status: it reads the missing table.
		batch[2].Items = append(batch[2].Items, persistence.WriteItem{Kind: persistence.ItemStatus,
			Status: &persistence.StatusChange{ProviderMessageID: "wamid.A2", Status: persistence.StatusRead}})
		_, errs = submit(s, batch)
		if r := <-reports; r.rows != 4 || r.err == nil {
			t.Fatalf("second batch %+v", r)
		}
		for i, err := range errs {
			if (err != nil) != (i == 2) {
				t.Fatalf("write %d: %v", i, err)
			}
		}
		ctx := context.Background()
		for i := 0; i < 4; i++ {
			_, err := s.MessageByProviderID(ctx, fmt.Sprint("wamid.B", i))
			if (err != nil) != (i == 2) {
				t.Fatalf("message B%d: %v", i, err)
			}
		}
	})
}

// TestWebhookOpsInOneBatch: webhook log rows and outcome updates queued
// together: an update applies to a row committed before it (a caller learns
// a row's id once the row committed), never to a row of its own batch,
// whether queued before or after that row's insert (only a guessed id could
// name it); the last of two updates wins, and an invalid row fails alone.
func TestWebhookOpsInOneBatch(t *testing.T) {
	var reports chan batchReport
	adjust := func(c *persistence.Config) {
		reports = make(chan batchReport, 16)
		c.OnBatch = func(n int, _ time.Duration, err error) { reports <- batchReport{n, err} }
	}
	forEachConfig(t, adjust, func(t *testing.T, s persistence.Store) {
		ctx := context.Background()
		id0, err := s.LogWebhook(ctx, &persistence.WebhookLog{Provider: "whatsapp"})
		if err != nil {
			t.Fatal(err)
		}
		<-reports
		q, ok := s.(interface {
			QueueWebhooksForTest([]persistence.WebhookOpForTest) ([]int64, []error)
		})
		if !ok {
			t.Fatal("store has no QueueWebhooksForTest (export_test.go)")
		}
		// The next rows get id0+1, id0+2, id0+3 (a fresh database, one writer).
		ids, errs := q.QueueWebhooksForTest([]persistence.WebhookOpForTest{
			{ID: id0 + 1, Outcome: "early"},
			{Log: &persistence.WebhookLog{Provider: "whatsapp", Path: "/a"}},
			{ID: id0 + 1, Outcome: "late"},
			{ID: id0, Outcome: "first"},
			{ID: id0, Outcome: "second"},
			{ID: id0 + 2, Outcome: "before its row"},
			{Log: &persistence.WebhookLog{Provider: "whatsapp", Path: "/b"}},
			{Log: &persistence.WebhookLog{Provider: "sms", Headers: []byte(`{bad`)}},
			{Log: &persistence.WebhookLog{Provider: "sms", Path: "/c", Outcome: "custom"}},
			{ID: id0 + 1000, Outcome: "unknown row"},
		})
		if r := <-reports; r.rows != 10 || r.err != nil {
			t.Fatalf("batch %+v", r)
		}
		for i, err := range errs {
			if (err != nil) != (i == 7) || (i == 7 && !errors.Is(err, persistence.ErrInvalid)) {
				t.Fatalf("op %d: %v", i, err)
			}
		}
		if ids[1] != id0+1 || ids[6] != id0+2 || ids[8] != id0+3 {
			t.Fatalf("ids %v after %d", ids, id0)
		}
		r := s.(persistence.WebhookLogReader)
		for id, want := range map[int64]string{id0: "second", id0 + 1: "received", id0 + 2: "received", id0 + 3: "custom"} {
			l, err := r.WebhookLogByID(ctx, id)
			if err != nil || l.Outcome != want {
				t.Fatalf("row %d: %+v %v, want outcome %q", id, l, err, want)
			}
		}
	})
}

// breakStatusHistory drops the status_history table behind the store's back
// (export_test.go gives the store the method, in tests only).
func breakStatusHistory(t *testing.T, s persistence.Store) {
	t.Helper()
	d, ok := s.(interface {
		DropTableForTest(ctx context.Context, table string) error
	})
	if !ok {
		t.Fatal("store has no DropTableForTest (export_test.go)")
	}
	if err := d.DropTableForTest(context.Background(), "status_history"); err != nil {
		t.Fatal(err)
	}
}

// TestBatchRequests: on MySQL a batch of writes to conversations the
// committer has committed before, webhook log rows and outcomes is one
// request to the database (BEGIN, the rows of every table, the outcomes and
// COMMIT: the conversations come from the committed cache, convcache.go),
// two when CRM outbox rows, which carry the new messages' ids, are written
// too. (TestCachedConversations counts the batches that read first.)
func TestBatchRequests(t *testing.T) {
	for _, tc := range []struct {
		name   string
		outbox bool
		want   int64
	}{{"no outbox", false, 1}, {"outbox", true, 2}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 4
			s := storetest.OpenMySQLConfig(t, func(c *persistence.Config) {
				c.BatchMaxRows = 2 * n // a batch closes when it holds 2n ops
				c.BatchMaxWait = time.Hour
				c.BatchWaitFull = true
				c.Outbox = tc.outbox
			})
			ctx := context.Background()
			// First batch: n new conversations and n log rows.
			convs := make([]int64, n)
			logs := make([]int64, n)
			var wg sync.WaitGroup
			errs := make(chan error, 2*n)
			for i := range n {
				wg.Add(2)
				go func() {
					defer wg.Done()
					res, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{Key: key(800 + i), Items: []persistence.WriteItem{inbound(fmt.Sprint("wamid.RQ", i))}})
					if err == nil {
						convs[i] = res.Conversation.ID
					}
					errs <- err
				}()
				go func() {
					defer wg.Done()
					id, err := s.LogWebhook(ctx, &persistence.WebhookLog{Provider: "whatsapp", Body: []byte(fmt.Sprint("first ", i))})
					logs[i] = id
					errs <- err
				}()
			}
			wg.Wait()
			for range 2 * n {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			// Second batch: a message to each conversation and an outcome for
			// each row.
			before := stats(s).Requests
			results := make([]*persistence.WriteResult, n)
			for i := range n {
				wg.Add(2)
				go func() {
					defer wg.Done()
					res, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: convs[i], LastSeq: 1,
						Items: []persistence.WriteItem{inbound(fmt.Sprint("wamid.RQ2.", i))}})
					results[i] = res
					errs <- err
				}()
				go func() {
					defer wg.Done()
					done := make(chan error, 1)
					s.SetWebhookOutcome(logs[i], fmt.Sprint("processed ", i), func(err error) { done <- err })
					errs <- <-done
				}()
			}
			wg.Wait()
			for range 2 * n {
				if err := <-errs; err != nil {
					t.Fatal(err)
				}
			}
			if got := stats(s).Requests - before; got != tc.want {
				t.Fatalf("the batch took %d requests, want %d", got, tc.want)
			}
			// What the batch reported is what it stored.
			lr := s.(persistence.WebhookLogReader)
			for i := range n {
				res := results[i]
				if len(res.Items) != 1 || res.Items[0].Message == nil || res.Items[0].Event == nil {
					t.Fatalf("write %d: %+v", i, res)
				}
				m, ev := res.Items[0].Message, res.Items[0].Event
				got, err := s.MessageByProviderID(ctx, fmt.Sprint("wamid.RQ2.", i))
				if err != nil || got.ID != m.ID || ev.MessageID != m.ID || ev.ID <= 0 {
					t.Fatalf("write %d: message %+v, event %+v; stored %+v %v", i, m, ev, got, err)
				}
				l, err := lr.WebhookLogByID(ctx, logs[i])
				if err != nil || l.Outcome != fmt.Sprint("processed ", i) {
					t.Fatalf("log %d: %+v %v", i, l, err)
				}
			}
		})
	}
}

// TestWebhookLogWithItem: a webhook log row carried by a write item is
// stored in the write's transaction with the item's outcome; a redelivery's
// row says duplicate; a write that fails stores no row.
func TestWebhookLogWithItem(t *testing.T) {
	forEachConfig(t, nil, func(t *testing.T, s persistence.Store) {
		ctx := context.Background()
		lr := s.(persistence.WebhookLogReader)
		item := func(pid, body string) persistence.WriteItem {
			it := inbound(pid)
			it.Log = &persistence.WebhookLog{Provider: "whatsapp", Path: "/webhooks/whatsapp", Body: []byte(body),
				Headers: json.RawMessage(`{"X-Request-Id":"r1"}`), Outcome: "ignored: the store sets it"}
			return it
		}
		res, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{Key: key(900), Items: []persistence.WriteItem{item("wamid.LOG1", "first")}})
		if err != nil {
			t.Fatal(err)
		}
		first := res.Items[0].LogID
		l, err := lr.WebhookLogByID(ctx, first)
		if err != nil || first <= 0 || l.Outcome != persistence.WebhookProcessed || string(l.Body) != "first" || l.Path != "/webhooks/whatsapp" ||
			!strings.Contains(string(l.Headers), `"r1"`) {
			t.Fatalf("row %d: %+v %v", first, l, err)
		}
		conv := res.Conversation
		res, err = s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: conv.ID, LastSeq: conv.LastSeq,
			Items: []persistence.WriteItem{item("wamid.LOG1", "again")}})
		if err != nil || !res.Items[0].Duplicate {
			t.Fatalf("redelivery: %+v %v", res, err)
		}
		if l, err := lr.WebhookLogByID(ctx, res.Items[0].LogID); err != nil || l.Outcome != persistence.WebhookDuplicate || string(l.Body) != "again" {
			t.Fatalf("redelivery row: %+v %v", l, err)
		}
		// A stale write fails: no row, and the next row takes the next id.
		if _, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: conv.ID, LastSeq: conv.LastSeq + 5,
			Items: []persistence.WriteItem{item("wamid.LOG2", "stale")}}); !errors.Is(err, persistence.ErrSeqTaken) {
			t.Fatalf("stale write: %v", err)
		}
		next, err := s.LogWebhook(ctx, &persistence.WebhookLog{Provider: "sms"})
		if err != nil || next != res.Items[0].LogID+1 {
			t.Fatalf("next row %d after %d: %v", next, res.Items[0].LogID, err)
		}
	})
}

// TestOpeningRequests: on MySQL the first messages of n new contacts in one
// batch cost two requests each (the contact's and the conversation's
// inserts) besides the batch's two: the batch looks up the conversations it
// names by key, and their contacts, with its first request. A contact that
// exists (here on another channel) is read there too.
func TestOpeningRequests(t *testing.T) {
	const n = 4
	s := storetest.OpenMySQLConfig(t, func(c *persistence.Config) {
		c.BatchMaxRows = n
		c.BatchMaxWait = time.Hour
		c.BatchWaitFull = true
	})
	write := func(k persistence.ConversationKey, pid string) *persistence.ConversationWrite {
		return &persistence.ConversationWrite{Key: k, ContactName: "Name " + pid, Items: []persistence.WriteItem{inbound(pid)}}
	}
	sms := func(i int) persistence.ConversationKey {
		k := key(950 + i)
		k.Channel = persistence.ChannelSMS
		return k
	}
	// n new contacts.
	var ws []*persistence.ConversationWrite
	for i := range n {
		ws = append(ws, write(key(950+i), fmt.Sprint("wamid.OPEN", i)))
	}
	before := stats(s).Requests
	res, errs := submit(s, ws)
	if got, want := stats(s).Requests-before, int64(2+2*n); got != want {
		t.Fatalf("opening %d conversations took %d requests, want %d", n, got, want)
	}
	for i, err := range errs {
		if err != nil || !res[i].Created || res[i].Conversation.ContactName != fmt.Sprint("Name wamid.OPEN", i) {
			t.Fatalf("write %d: %+v %v", i, res[i], err)
		}
	}
	// The same contacts on SMS: their contacts exist; the conversations
	// are new; the WhatsApp ones are not touched.
	ws = ws[:0]
	for i := range n {
		ws = append(ws, write(sms(i), fmt.Sprint("SM", i)))
	}
	sres, errs := submit(s, ws)
	for i, err := range errs {
		if err != nil || !sres[i].Created || sres[i].Conversation.ContactID != res[i].Conversation.ContactID ||
			sres[i].Conversation.ID == res[i].Conversation.ID || sres[i].Conversation.ContactName != fmt.Sprint("Name SM", i) {
			t.Fatalf("sms write %d: %+v %v", i, sres[i], err)
		}
	}
	// Both again, by key: found, not created, in order.
	ws = ws[:0]
	for i := range n / 2 {
		ws = append(ws, write(key(950+i), fmt.Sprint("wamid.AGAIN", i)), write(sms(i), fmt.Sprint("SMAGAIN", i)))
	}
	for _, w := range ws {
		w.LastSeq = 1
	}
	again, errs := submit(s, ws)
	for i, err := range errs {
		want := res[i/2].Conversation.ID
		if i%2 == 1 {
			want = sres[i/2].Conversation.ID
		}
		if err != nil || again[i].Created || again[i].Conversation.ID != want || again[i].Conversation.LastSeq != 2 {
			t.Fatalf("write %d again: %+v %v", i, again[i], err)
		}
	}
}

// TestCachedConversations: a batch that takes its conversations from the
// committed cache skips its reads, and the database still decides.
//   - A redelivery, which the skipped dedupe lookup would have found, hits
//     the unique key: the attempt is rolled back and the batch runs again
//     with its reads, which report the duplicate; nothing is stored twice.
//   - A conversation changed behind the committer's back (another writer):
//     a write at the database's seq, which the cache thinks taken, runs
//     again with the reads and succeeds; a write at the cache's seq hits the
//     events' unique (conversation, seq) and fails with ErrSeqTaken, as it
//     would have with the reads.
//   - A contact's change through one of its conversations (SMS opt-out, a
//     new name) shows in its other cached conversation.
func TestCachedConversations(t *testing.T) {
	s := storetest.OpenMySQLConfig(t, func(c *persistence.Config) {
		c.BatchMaxRows = 2 // the batches below hold two writes
		c.BatchMaxWait = time.Hour
		c.BatchWaitFull = true
	})
	x, ok := s.(interface {
		ExecForTest(ctx context.Context, query string, args ...any) error
	})
	if !ok {
		t.Fatal("store has no ExecForTest (export_test.go)")
	}
	ctx := context.Background()
	sms := key(970)
	sms.Channel = persistence.ChannelSMS
	one := func(w *persistence.ConversationWrite) *persistence.WriteResult {
		t.Helper()
		res, errs := submit(s, []*persistence.ConversationWrite{w, {Key: key(971), ContactName: "Other"}})
		if errs[0] != nil {
			t.Fatal(errs[0])
		}
		return res[0]
	}
	// Two conversations of one contact, committed (and cached) by two
	// batches.
	wa := one(&persistence.ConversationWrite{Key: key(970), ContactName: "Asha", Items: []persistence.WriteItem{inbound("wamid.C1")}}).Conversation
	sm := one(&persistence.ConversationWrite{Key: sms, Items: []persistence.WriteItem{inbound("SMC1")}}).Conversation
	other := one(&persistence.ConversationWrite{Key: key(971)}).Conversation

	// A batch of cached conversations: one request.
	before, misses, cached := stats(s).Requests, stats(s).CacheMisses, stats(s).CachedBatches
	res, errs := submit(s, []*persistence.ConversationWrite{
		{ConversationID: wa.ID, LastSeq: 1, Items: []persistence.WriteItem{inbound("wamid.C2")}},
		{ConversationID: other.ID, LastSeq: 0, Items: []persistence.WriteItem{inbound("wamid.O1")}},
	})
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if got := stats(s).Requests - before; got != 1 || stats(s).CacheMisses != misses || stats(s).CachedBatches-cached != 1 {
		t.Fatalf("cached batch: %d requests, %d misses, %d cached batches, want 1, 0 and 1",
			got, stats(s).CacheMisses-misses, stats(s).CachedBatches-cached)
	}
	if res[0].Conversation.LastSeq != 2 || res[0].Conversation.ContactName != "Asha" || res[1].Conversation.LastSeq != 1 {
		t.Fatalf("cached batch: %+v / %+v", res[0].Conversation, res[1].Conversation)
	}

	// A redelivery of wamid.C1 beside a new message.
	before, misses = stats(s).Requests, stats(s).CacheMisses
	res, errs = submit(s, []*persistence.ConversationWrite{
		{ConversationID: wa.ID, LastSeq: 2, Items: []persistence.WriteItem{inbound("wamid.C1")}},
		{ConversationID: other.ID, LastSeq: 1, Items: []persistence.WriteItem{inbound("wamid.O2")}},
	})
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	// The cached attempt and its ROLLBACK; BEGIN with the reads, the
	// redelivered message read in full, the rows with COMMIT.
	if got := stats(s).Requests - before; got != 5 || stats(s).CacheMisses-misses != 1 {
		t.Fatalf("redelivery: %d requests, %d misses, want 5 and 1",
			got, stats(s).CacheMisses-misses)
	}
	if it := res[0].Items[0]; !it.Duplicate || it.Message == nil || it.Message.ProviderMessageID != "wamid.C1" || it.Message.Seq != 1 || res[0].Conversation.LastSeq != 2 {
		t.Fatalf("redelivery: %+v, conversation %+v", it, res[0].Conversation)
	}
	if it := res[1].Items[0]; it.Duplicate || it.Message == nil || it.Message.Seq != 2 {
		t.Fatalf("the new message beside it: %+v", it)
	}
	evs, err := s.ConversationEvents(ctx, wa.ID, 0, 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("events of the conversation: %d, %v (want the messages wamid.C1 and wamid.C2 once each)", len(evs), err)
	}

	// Another writer moves the WhatsApp conversation on (an event and
	// last_seq), unknown to the committer, whose cache (filled again by the
	// batch above) still says seq 2.
	behind := func(seq int64) {
		t.Helper()
		if err := x.ExecForTest(ctx, `INSERT INTO events (conversation_id, seq, type, status, created_at) VALUES (?, ?, 'note', '', NOW(6))`, wa.ID, seq); err != nil {
			t.Fatal(err)
		}
		if err := x.ExecForTest(ctx, `UPDATE conversations SET last_seq = ? WHERE id = ?`, seq, wa.ID); err != nil {
			t.Fatal(err)
		}
	}
	pair := func(waSeq int64, pid string, otherSeq int64) ([]*persistence.WriteResult, []error) {
		return submit(s, []*persistence.ConversationWrite{
			{ConversationID: wa.ID, LastSeq: waSeq, Items: []persistence.WriteItem{inbound(pid)}},
			{ConversationID: other.ID, LastSeq: otherSeq, Items: []persistence.WriteItem{inbound(pid + ".other")}},
		})
	}
	// A write at the database's seq, which the cache thinks taken.
	behind(3)
	misses = stats(s).CacheMisses
	res, errs = pair(3, "wamid.C3", 2)
	if errs[0] != nil || errs[1] != nil || stats(s).CacheMisses-misses != 1 || res[0].Conversation.LastSeq != 4 {
		t.Fatalf("write at the database's seq: %v, %v, %d misses, %+v", errs[0], errs[1], stats(s).CacheMisses-misses, res[0])
	}
	// A write at the cache's seq, which the database has taken.
	behind(5)
	misses = stats(s).CacheMisses
	_, errs = pair(4, "wamid.C5", 3)
	if !errors.Is(errs[0], persistence.ErrSeqTaken) || errs[1] != nil || stats(s).CacheMisses-misses != 1 {
		t.Fatalf("write behind the database: %v, beside it %v, %d misses (want ErrSeqTaken, nil, 1)", errs[0], errs[1], stats(s).CacheMisses-misses)
	}
	if _, err := s.MessageByProviderID(ctx, "wamid.C5"); !errors.Is(err, persistence.ErrNotFound) {
		t.Fatalf("the refused message: %v", err)
	}
	if res, errs = pair(5, "wamid.C6", 4); errs[0] != nil || errs[1] != nil || res[0].Conversation.LastSeq != 6 {
		t.Fatalf("write after the refusal: %v %v %+v", errs[0], errs[1], res[0])
	}

	// The contact opts out of SMS and changes its name through its SMS
	// conversation; its WhatsApp conversation, cached, shows both.
	out := true
	it := inbound("SMC2")
	it.SMSOptOut = &out
	if got := one(&persistence.ConversationWrite{ConversationID: sm.ID, LastSeq: 1, ContactName: "Asha R", Items: []persistence.WriteItem{it}}); !got.Conversation.SMSOptedOut {
		t.Fatalf("opt-out: %+v", got.Conversation)
	}
	before = stats(s).Requests
	res, errs = pair(6, "wamid.C7", 5)
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if got := res[0].Conversation; !got.SMSOptedOut || got.ContactName != "Asha R" || stats(s).Requests-before != 1 {
		t.Fatalf("the contact's other conversation, %d requests: %+v", stats(s).Requests-before, got)
	}
}

// TestMessageChangesInOneBatch: providers' ids and delivery statuses of
// existing messages are read with the batch's first request and written
// with its rows: on MySQL a batch of them is two requests, however many
// statuses it holds. Within a batch they behave as one by one: a status
// recorded twice is a duplicate, a late lower status goes into the history
// only, each item reports the message as its own change left it, and a
// double send of a committed message is found (on MySQL through the unique
// key, the batch taking its conversation from the cache).
func TestMessageChangesInOneBatch(t *testing.T) {
	forEachConfig(t, func(c *persistence.Config) { c.BatchMaxRows = 1 }, func(t *testing.T, s persistence.Store) {
		ctx := context.Background()
		x := s.(interface {
			CountForTest(ctx context.Context, query string, args ...any) (int64, error)
		})
		mysql := strings.HasSuffix(t.Name(), "/mysql")
		outbound := func(cid string) persistence.WriteItem {
			return persistence.WriteItem{Kind: persistence.ItemOutbound, Message: &persistence.Message{ClientMsgID: cid, Text: "reply " + cid}}
		}
		status := func(msgID int64, pid, st string) persistence.WriteItem {
			return persistence.WriteItem{Kind: persistence.ItemStatus, Status: &persistence.StatusChange{MessageID: msgID, ProviderMessageID: pid,
				Status: st, Raw: json.RawMessage(`{"status":"` + st + `"}`)}}
		}
		var conv persistence.Conversation
		write := func(wantRequests int64, items ...persistence.WriteItem) *persistence.WriteResult {
			t.Helper()
			before := stats(s).Requests
			res, err := s.ApplyConversationWrite(ctx, &persistence.ConversationWrite{ConversationID: conv.ID, Key: key(990), LastSeq: conv.LastSeq, Items: items})
			if err != nil {
				t.Fatal(err)
			}
			if got := stats(s).Requests - before; mysql && wantRequests > 0 && got != wantRequests {
				t.Errorf("the batch took %d requests, want %d", got, wantRequests)
			}
			conv = res.Conversation
			return res
		}
		res := write(0, outbound("c1"), outbound("c2"))
		m1, m2 := res.Items[0].Message, res.Items[1].Message
		accepted := func(id int64, pid string) persistence.WriteItem {
			return persistence.WriteItem{Kind: persistence.ItemProviderAccepted, Status: &persistence.StatusChange{MessageID: id, ProviderMessageID: pid}}
		}
		res = write(2, accepted(m1.ID, "wamid.S1"), accepted(m2.ID, "wamid.S2"), accepted(m1.ID, "wamid.OTHER"))
		if m := res.Items[0].Message; m.ProviderMessageID != "wamid.S1" || m.Status != persistence.StatusAccepted || res.Items[0].Duplicate ||
			!res.Items[2].Duplicate || res.Items[2].Message.ProviderMessageID != "wamid.S1" {
			t.Fatalf("provider ids: %+v", res.Items)
		}
		failure := status(m2.ID, "", persistence.StatusFailed)
		failure.Status.Error = json.RawMessage(`{"code":131047,"title":"Re-engagement message"}`)
		res = write(2,
			status(0, "wamid.S1", persistence.StatusRead),
			status(0, "wamid.S1", persistence.StatusDelivered), // late: history only
			status(0, "wamid.S1", persistence.StatusRead),      // again: nothing
			status(0, "wamid.S2", persistence.StatusSent),
			failure,
			status(0, "wamid.UNKNOWN", persistence.StatusRead))
		want := []struct {
			dup    bool
			status string
		}{{false, "read"}, {true, "read"}, {true, "read"}, {false, "sent"}, {false, "failed"}, {true, ""}}
		for i, w := range want {
			it := res.Items[i]
			got := ""
			if it.Message != nil {
				got = it.Message.Status
			}
			if it.Duplicate != w.dup || got != w.status || (it.Event != nil) == w.dup {
				t.Errorf("item %d: duplicate %v, message status %q, event %v; want %v, %q", i, it.Duplicate, got, it.Event, w.dup, w.status)
			}
		}
		if res.Items[4].Event.Seq != res.Items[3].Event.Seq+1 || res.Items[0].Event.Status != "read" {
			t.Errorf("events: %+v / %+v", res.Items[3].Event, res.Items[4].Event)
		}
		for pid, st := range map[string]string{"wamid.S1": "read", "wamid.S2": "failed"} {
			m, err := s.MessageByProviderID(ctx, pid)
			if err != nil || m.Status != st {
				t.Fatalf("%s stored: %+v %v, want %s", pid, m, err, st)
			}
			if pid == "wamid.S2" && !strings.Contains(string(m.Error), "131047") {
				t.Fatalf("the failure's error: %s", m.Error)
			}
		}
		for id, n := range map[int64]int64{m1.ID: 2, m2.ID: 2} {
			if got, err := x.CountForTest(ctx, `SELECT COUNT(*) FROM status_history WHERE message_id = ?`, id); err != nil || got != n {
				t.Fatalf("history of message %d: %d rows, %v; want %d", id, got, err, n)
			}
		}
		// The same statuses in a later batch: all duplicates, no new row.
		res = write(2, status(0, "wamid.S1", persistence.StatusDelivered), status(m2.ID, "", persistence.StatusSent))
		if !res.Items[0].Duplicate || !res.Items[1].Duplicate || conv.LastSeq != 5 {
			t.Fatalf("statuses again: %+v, conversation at %d", res.Items, conv.LastSeq)
		}
		// A double send of c1, and a new message beside it.
		misses := stats(s).CacheMisses
		res = write(0, outbound("c1"), outbound("c3"))
		if !res.Items[0].Duplicate || res.Items[0].Message.ID != m1.ID || res.Items[0].Message.Status != "read" ||
			res.Items[1].Duplicate || res.Items[1].Message.Seq != 6 {
			t.Fatalf("double send: %+v", res.Items)
		}
		if mysql && stats(s).CacheMisses-misses != 1 {
			t.Errorf("double send: %d cache misses, want 1 (the unique key caught it)", stats(s).CacheMisses-misses)
		}
		if n, err := x.CountForTest(ctx, `SELECT COUNT(*) FROM messages WHERE client_msg_id = 'c1'`); err != nil || n != 1 {
			t.Fatalf("c1 stored %d times, %v", n, err)
		}
	})
}

// TestScriptEventsNameTheirMessages: in one batch of more messages than one
// INSERT takes (200) and more bytes than one request carries (1 MiB), every
// message event names its own message in the database. On MySQL that
// covers each way a script names a new message's id: LAST_INSERT_ID() in
// the statement right after the INSERT, a user variable SET afterwards for
// a later statement, and in a later request the id an earlier one read
// back.
func TestScriptEventsNameTheirMessages(t *testing.T) {
	const n = 450
	text := strings.Repeat("t", 3000) // n of them: more than 1 MiB
	var reports chan batchReport
	forEachConfig(t, func(c *persistence.Config) {
		c.BatchMaxRows = n
		c.BatchMaxWait = time.Hour
		c.BatchWaitFull = true
		reports = make(chan batchReport, 2*n)
		c.OnBatch = func(rows int, _ time.Duration, err error) { reports <- batchReport{rows, err} }
	}, func(t *testing.T, s persistence.Store) {
		ctx := context.Background()
		check := func(round string, res []*persistence.WriteResult, errs []error, afterEvent int64) {
			t.Helper()
			// One batch, not a failed one whose writes were retried alone.
			if r := <-reports; r.rows != n || r.err != nil {
				t.Fatalf("%s: batch %+v, want %d writes committed together", round, r, n)
			}
			want := map[int64]string{} // conversation -> provider id of its message
			for i, err := range errs {
				if err != nil {
					t.Fatalf("%s: write %d: %v", round, i, err)
				}
				want[res[i].Conversation.ID] = fmt.Sprint("wamid.SC", round, ".", i)
			}
			evs, err := s.EventsAfter(ctx, 0, afterEvent, 2*n)
			if err != nil {
				t.Fatal(err)
			}
			seen := 0
			for _, ev := range evs {
				if ev.Type != persistence.EventMessage {
					continue
				}
				seen++
				if ev.Message == nil {
					t.Fatalf("%s: event %d of conversation %d names no message", round, ev.ID, ev.ConversationID)
				}
				if m := ev.Message; m.ConversationID != ev.ConversationID || m.ProviderMessageID != want[ev.ConversationID] {
					t.Fatalf("%s: event %d of conversation %d names message %d (%s of conversation %d), want %s",
						round, ev.ID, ev.ConversationID, m.ID, m.ProviderMessageID, m.ConversationID, want[ev.ConversationID])
				}
			}
			if seen != n {
				t.Fatalf("%s: %d message events, want %d", round, seen, n)
			}
		}
		// Round 1 opens n conversations, round 2 writes to them again.
		ws := make([]*persistence.ConversationWrite, n)
		for i := range ws {
			ws[i] = &persistence.ConversationWrite{Key: key(7000 + i), Items: []persistence.WriteItem{{Kind: persistence.ItemInbound,
				Message: &persistence.Message{ProviderMessageID: fmt.Sprint("wamid.SC1.", i), Text: text}}}}
		}
		res, errs := submit(s, ws)
		check("1", res, errs, 0)
		last := int64(0)
		for _, r := range res {
			last = max(last, r.Items[0].Event.ID)
		}
		before := stats(s).Requests
		for i := range ws {
			ws[i] = &persistence.ConversationWrite{ConversationID: res[i].Conversation.ID, LastSeq: res[i].Conversation.LastSeq,
				Items: []persistence.WriteItem{{Kind: persistence.ItemInbound,
					Message: &persistence.Message{ProviderMessageID: fmt.Sprint("wamid.SC2.", i), Text: text}}}}
		}
		res2, errs := submit(s, ws)
		check("2", res2, errs, last)
		if got := stats(s).Requests - before; got < 2 {
			t.Fatalf("the batch took %d requests; the test needs it split", got)
		}
	})
}

// TestRedoLogWarning: Open warns about an InnoDB redo log under
// MinRedoLog, and only then; the server's own size decides which case runs.
func TestRedoLogWarning(t *testing.T) {
	dsn := storetest.DSNForMySQL(t)
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var size int64
	if err := db.QueryRow(`SELECT @@innodb_redo_log_capacity`).Scan(&size); err != nil {
		if err := db.QueryRow(`SELECT @@innodb_log_file_size`).Scan(&size); err != nil {
			t.Fatal(err)
		}
		var files int64
		if err := db.QueryRow(`SELECT @@innodb_log_files_in_group`).Scan(&files); err == nil && files > 1 {
			size *= files
		}
	}
	var logs strings.Builder
	s, err := persistence.Open(context.Background(), persistence.Config{Driver: persistence.DriverMySQL, DSN: dsn}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	warned := strings.Contains(logs.String(), `"redo_log_bytes":`+strconv.FormatInt(size, 10))
	if small := size < persistence.MinRedoLog; warned != small {
		t.Fatalf("redo log of %d bytes: warned %v, want %v; log:\n%s", size, warned, small, logs.String())
	}
	t.Logf("redo log %d MiB, warned: %v", size>>20, warned)
}

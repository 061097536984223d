package httpapi_test

// The RM console and the sandbox customer phone in headless Chromium,
// against the real server: a customer writes from the phone page, the RM
// answers from the console and the ticks advance; the socket drops and
// what was said meanwhile arrives exactly once; outside the WhatsApp window
// only templates go; a wrong password; RMs see their own conversations and
// a supervisor sees all and reassigns.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"urva/internal/browsertest"
	"urva/persistence/storetest"
	"urva/transport/sandbox"
)

// consoleLogin opens the console in a new tab and logs in as u.
func (s *stack) consoleLogin(b *browsertest.Browser, u user) *browsertest.Page {
	s.t.Helper()
	p := b.Open(s.t, s.base+"/")
	p.WaitFor(s.t, `window.urvaConsole && window.urvaConsole.state === "login"`, browserWaitShort)
	p.Type(s.t, "#username", u.Username)
	p.Type(s.t, "#password", u.Password)
	p.Click(s.t, "#login-button")
	p.WaitFor(s.t, `window.urvaConsole.state === "ready" && window.urvaConsole.connection === "connected"`, browserWaitShort)
	return p
}

// openPhone opens the sandbox phone for number on channel.
func (s *stack) openPhone(b *browsertest.Browser, number, channel, name string) *browsertest.Page {
	s.t.Helper()
	p := b.Open(s.t, s.base+"/sandbox/phone?phone="+url.QueryEscape(number)+"&channel="+channel+"&name="+url.QueryEscape(name))
	p.WaitFor(s.t, `window.urvaPhone && window.urvaPhone.state === "live"`, browserWaitShort)
	return p
}

// jsString quotes s for a script.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// openConversation clicks the console's entry for the contact phone.
func openConversation(t *testing.T, p *browsertest.Page, phone string) {
	t.Helper()
	sel := `[...document.querySelectorAll("li.conversation")].find((li) => li.textContent.includes(` + jsString(phone) + `))`
	p.WaitFor(t, `!!`+sel, browserWaitShort)
	p.Eval(t, sel+`.click()`, nil)
	p.WaitFor(t, `document.querySelector("#thread") && document.querySelector("#thread").dataset.id !== ""`, browserWaitShort)
}

// countMsgs is a script counting the thread's messages of a direction
// whose text contains text.
func countMsgs(direction, text string) string {
	return `[...document.querySelectorAll("#timeline .msg[data-direction=` + direction + `]")].filter((m) => m.textContent.includes(` +
		jsString(text) + `)).length`
}

func TestBrowserConsoleChatWithTheSandboxPhone(t *testing.T) {
	b := browsertest.Start(t)
	s := newStack(t, storetest.OpenSQLite(t), withVideo(videoConfig{}), withCalls(callsConfig{}))
	const number = "+919811100051"
	console := s.consoleLogin(b, s.rmA)
	phone := s.openPhone(b, number, "whatsapp", "Meera Iyer")

	// The customer writes from the phone; the RM sees it in the console.
	phone.Type(t, "#text", "Hello from my phone")
	phone.Click(t, "#send")
	openConversation(t, console, number)
	console.WaitFor(t, countMsgs("in", "Hello from my phone")+` === 1`, browserWaitShort)

	// The RM answers; the phone receives it and the ticks reach delivered.
	console.Type(t, "#composer", "Hi Meera, how can I help?")
	console.Click(t, "#send")
	phone.WaitFor(t, `[...document.querySelectorAll("#messages .msg[data-direction=to_customer]")].some((m) => m.textContent.includes("how can I help"))`,
		browserWaitShort)
	console.WaitFor(t, `[...document.querySelectorAll("#timeline .msg[data-direction=out] .status")].some((s) => ["delivered", "read"].includes(s.dataset.status))`,
		browserWaitShort)
	var n int
	console.Eval(t, countMsgs("out", "how can I help"), &n)
	if n != 1 {
		t.Fatalf("the reply shows %d times in the console", n)
	}

	// The server closes the console's socket; three customer messages are
	// sent meanwhile; once the console is back each shows exactly once.
	r := s.do("POST", fmt.Sprintf("/admin/rms/%d/disconnect", s.rmA.ID), itAdminToken, nil, nil)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"sockets":1`) {
		t.Fatalf("disconnect: %v", r)
	}
	console.WaitFor(t, `window.urvaConsole.connection !== "connected"`, browserWaitShort)
	for i := 1; i <= 3; i++ {
		r := s.postJSON("/sandbox/phone/send", "", map[string]string{"phone": number, "channel": "whatsapp", "name": "Meera Iyer",
			"text": fmt.Sprintf("while you were away %d", i)})
		if r.status != http.StatusOK {
			t.Fatalf("phone send: %v", r)
		}
	}
	console.WaitFor(t, `window.urvaConsole.connection === "connected"`, browserWaitShort)
	console.WaitFor(t, countMsgs("in", "while you were away 3")+` === 1`, browserWaitShort)
	for i := 1; i <= 3; i++ {
		console.Eval(t, countMsgs("in", fmt.Sprintf("while you were away %d", i)), &n)
		if n != 1 {
			t.Fatalf("message %d shows %d times after the reconnect", i, n)
		}
	}
	console.Eval(t, `document.querySelectorAll("#timeline .msg").length`, &n)
	if n != 5 {
		t.Fatalf("%d messages in the thread, want 5", n)
	}
	// The conversation list agrees: one entry for the contact.
	console.Eval(t, `[...document.querySelectorAll("li.conversation")].filter((li) => li.textContent.includes(`+jsString(number)+`)).length`, &n)
	if n != 1 {
		t.Fatalf("%d list entries for the contact", n)
	}

	// Call: the sandbox dialler rings both legs; the progress shows live
	// and ends completed.
	console.Click(t, "#call-button")
	console.WaitFor(t, `[...document.querySelectorAll("#timeline .call-line")].some((l) => l.dataset.status === "completed")`, browserWaitShort)
	// Video: the link goes to the phone as a message, as a link it can open.
	console.Click(t, "#video-button")
	phone.WaitFor(t, `[...document.querySelectorAll("#messages .msg[data-direction=to_customer] a")].some((a) => a.href.includes("/v/"))`,
		browserWaitShort)

	// URVA_SCREENSHOT=<file.png> saves the console as it is now (the
	// README's picture: `make screenshot`).
	if path := os.Getenv("URVA_SCREENSHOT"); path != "" {
		console.Eval(t, `document.querySelector("#history").scrollTop = 1e9`, nil)
		if err := os.WriteFile(path, console.Screenshot(t, 1280, 760), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBrowserConsoleTemplatesOutsideTheWindow(t *testing.T) {
	b := browsertest.Start(t)
	s := newStack(t, storetest.OpenSQLite(t))
	const number = "+919811100052"
	console := s.consoleLogin(b, s.rmA)

	// A conversation the RM opened with a template: the contact has not
	// written, so the window is closed.
	r := s.postJSON("/api/conversations", s.login(s.rmA), map[string]any{"channel": "whatsapp", "phone": number,
		"template": map[string]any{"name": "followup", "language": "en", "params": []string{"Arjun"}}})
	if r.status != http.StatusAccepted && r.status != http.StatusCreated {
		t.Fatalf("start conversation: %v", r)
	}
	openConversation(t, console, number)
	console.WaitFor(t, `!document.querySelector("#window-closed").hidden && document.querySelector("#window-closed").offsetParent !== null`, browserWaitShort)
	if got := console.Text(t, "#window-closed"); !strings.Contains(got, "WhatsApp only allows approved templates") {
		t.Fatalf("window explanation %q", got)
	}
	console.Eval(t, `(() => { const s = document.querySelector("#template-select"); s.value = [...s.options].find((o) => o.value.startsWith("appointment_reminder")).value; s.dispatchEvent(new Event("change", {bubbles: true})); })()`, nil)
	console.WaitFor(t, `document.querySelectorAll(".template-param").length === 2`, browserWaitShort)
	console.Type(t, "#template-param-1", "Arjun")
	console.Type(t, "#template-param-2", "Friday 11:00")
	console.Click(t, "#template-send")
	console.WaitFor(t, `[...document.querySelectorAll("#timeline .msg[data-direction=out]")].filter((m) => m.dataset.type === "template").length === 2`, browserWaitShort)
	// The provider got the template with its parameters.
	s.waitSent(t, func(m sentWA) bool {
		return m.Template != nil && m.Template.Name == "appointment_reminder" && strings.Join(m.Template.Params, "|") == "Arjun|Friday 11:00"
	})
}

func TestBrowserConsoleLoginAndSupervisor(t *testing.T) {
	b := browsertest.Start(t)
	s := newStack(t, storetest.OpenSQLite(t))

	// A wrong password says so.
	p := b.Open(t, s.base+"/")
	p.WaitFor(t, `window.urvaConsole && window.urvaConsole.state === "login"`, browserWaitShort)
	p.Type(t, "#username", s.rmA.Username)
	p.Type(t, "#password", "not the password")
	p.Click(t, "#login-button")
	p.WaitFor(t, `document.querySelector("#login-error").textContent.includes("Wrong username or password")`, browserWaitShort)
	p.Close()

	// Each RM sees their own conversation only.
	consoleA := s.consoleLogin(b, s.rmA)
	s.mustWebhook(inboundBody(inbound{From: "919811100053", Name: "Contact A", WAMID: s.wamid(), Text: "for A"}))
	consoleA.WaitFor(t, `document.querySelectorAll("li.conversation").length === 1`, browserWaitShort)
	consoleB := s.consoleLogin(b, s.rmB)
	s.mustWebhook(inboundBody(inbound{From: "919811100054", Name: "Contact B", WAMID: s.wamid(), Text: "for B"}))
	consoleB.WaitFor(t, `document.querySelectorAll("li.conversation").length === 1 && document.querySelector("li.conversation").textContent.includes("+919811100054")`,
		browserWaitShort)
	var n int
	consoleA.Eval(t, `document.querySelectorAll("li.conversation").length`, &n)
	if n != 1 || !strings.Contains(consoleA.Text(t, "li.conversation"), "+919811100053") {
		t.Fatalf("RM A sees %d conversations", n)
	}

	// The supervisor sees both and gives A's conversation to B.
	sup := s.consoleLogin(b, s.sup)
	sup.WaitFor(t, `document.querySelectorAll("li.conversation").length === 2`, browserWaitShort)
	openConversation(t, sup, "+919811100053")
	sup.WaitFor(t, `[...document.querySelector("#assign-select").options].some((o) => o.value === `+jsString(fmt.Sprint(s.rmB.ID))+`)`, browserWaitShort)
	sup.Eval(t, `(() => { const s = document.querySelector("#assign-select"); s.value = `+jsString(fmt.Sprint(s.rmB.ID))+`; s.dispatchEvent(new Event("change", {bubbles: true})); })()`, nil)
	sup.Click(t, "#assign-button")
	consoleB.WaitFor(t, `document.querySelectorAll("li.conversation").length === 2`, browserWaitShort)
	conv := s.conversations(s.login(s.rmB))
	if len(conv) != 2 {
		t.Fatalf("RM B has %d conversations after the reassignment", len(conv))
	}
	for _, c := range conv {
		if c.AssignedRMID == nil || *c.AssignedRMID != s.rmB.ID {
			t.Fatalf("conversation %+v", c)
		}
	}
}

type sentWA = sandbox.SentMessage

// waitSent waits until the sandbox WhatsApp received a send matching ok.
func (s *stack) waitSent(t *testing.T, ok func(sentWA) bool) {
	t.Helper()
	ch, cancel := s.sb.Subscribe()
	defer cancel()
	for _, m := range s.sb.Sent() {
		if ok(m) {
			return
		}
	}
	timer := time.NewTimer(itGuard)
	defer timer.Stop()
	for {
		select {
		case m := <-ch:
			if ok(m) {
				return
			}
		case <-timer.C:
			t.Fatalf("no matching send reached the provider: %+v", s.sb.Sent())
		}
	}
}

func TestBrowserConsoleAtPhoneWidthAndByKeyboard(t *testing.T) {
	b := browsertest.Start(t)
	s := newStack(t, storetest.OpenSQLite(t))
	console := s.consoleLogin(b, s.rmA)
	s.mustWebhook(inboundBody(inbound{From: "919811100055", Name: "Small Screen", WAMID: s.wamid(), Text: "hello from a phone-sized window"}))
	console.WaitFor(t, `document.querySelectorAll("li.conversation").length === 1`, browserWaitShort)

	// Keyboard: the conversation opens with Enter from the focused list item.
	console.Eval(t, `document.querySelector("li.conversation").focus()`, nil)
	console.Eval(t, `document.activeElement.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", bubbles: true}))`, nil)
	console.WaitFor(t, `document.querySelector("#thread").dataset.id !== ""`, browserWaitShort)
	console.WaitFor(t, `document.activeElement !== document.body`, browserWaitShort)

	// Every control has a label a screen reader can read.
	var unlabelled []string
	console.Eval(t, `[...document.querySelectorAll("input, textarea, select, button")].filter((e) => e.offsetParent !== null).filter((e) => {
		const label = e.getAttribute("aria-label") || (e.labels && e.labels.length && e.labels[0].textContent) || e.textContent || e.getAttribute("title");
		return !label || !label.trim();
	}).map((e) => e.outerHTML.slice(0, 80))`, &unlabelled)
	if len(unlabelled) > 0 {
		t.Fatalf("controls without a label: %v", unlabelled)
	}

	// At phone width the list and the thread are two screens, nothing
	// scrolls sideways, and Back returns to the list.
	console.SetViewport(t, 390, 780)
	console.WaitFor(t, `document.querySelector("#app").dataset.view === "thread"`, browserWaitShort)
	var layout struct {
		Overflow    bool `json:"overflow"`
		ListVisible bool `json:"list"`
		Composer    bool `json:"composer"`
	}
	const measure = `({overflow: document.documentElement.scrollWidth > window.innerWidth,
		list: document.querySelector("#conversations").getBoundingClientRect().width > 0 && document.querySelector("#conversations").offsetParent !== null,
		composer: document.querySelector("#composer").getBoundingClientRect().right <= window.innerWidth})`
	console.Eval(t, measure, &layout)
	if layout.Overflow || layout.ListVisible || !layout.Composer {
		t.Fatalf("thread at 390px: %+v", layout)
	}
	console.Click(t, "#back")
	console.WaitFor(t, `document.querySelector("#app").dataset.view === "list"`, browserWaitShort)
	console.Eval(t, measure, &layout)
	if layout.Overflow || !layout.ListVisible {
		t.Fatalf("list at 390px: %+v", layout)
	}
}

func TestBrowserConsoleShowsInvitesMadeWhileOffline(t *testing.T) {
	b := browsertest.Start(t)
	s := newStack(t, storetest.OpenSQLite(t), withVideo(videoConfig{}))
	// B is not logged in when A invites them.
	s.mustStartVideo(s.login(s.rmA), map[string]any{"invitee_rm_id": s.rmB.ID})
	console := s.consoleLogin(b, s.rmB)
	console.WaitFor(t, `!!document.querySelector("#toasts .toast.invite .join")`, browserWaitShort)
	if got := console.Text(t, "#toasts .toast.invite"); !strings.Contains(got, "invites you to a video call") {
		t.Fatalf("invite toast %q", got)
	}
}

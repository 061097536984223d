// Package sandbox holds in-process fakes of the providers the server talks
// to, for the embedded default and for tests. Each fake behaves like the real
// provider on the wire: it accepts the same API calls, answers with the same
// success and error bodies, and posts signed webhooks back to the server, so
// the real provider clients and webhook handlers are exercised end to end. The
// fakes also act as the contacts' phones: they record what a contact received
// and let a person or a test send messages as a contact.
package sandbox

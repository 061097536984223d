// Package exotel speaks the wire format of an Exotel-compatible click-to-call
// dialler (Exotel Voice v1): a client that asks the dialler to connect two
// numbers, reads one call's details and looks calls up in bulk, and a parser
// for the status callbacks the dialler posts while and after a call runs.
//
// The flow: Connect asks the dialler to ring From (by default the contact);
// once that leg answers it rings To (the RM) and bridges the two. The
// dialler then posts an "answered" callback and, at the end, a "terminal"
// one with the final status, times, durations, legs and recording URL.
// Exotel retries a callback only twice and warns that callbacks can be lost,
// so a call with no terminal callback is reconciled with CallDetails.
//
// A Connect that fails without a clear answer may still have placed the call
// (see Error.Ambiguous): the caller must look the call up, by the CustomField
// it sent, with FindByCustomField before it tries again, so that an RM never
// gets two calls for one button press.
//
// Times on the wire are "2006-01-02 15:04:05" without a zone; they are read
// and written as Indian Standard Time (UTC+05:30), the zone Exotel reports
// in. RFC 3339 times, which carry their own offset, are accepted too.
//
// The dialler signs nothing: the callback URL carries a secret token, which
// the HTTP handler checks before it calls ParseCallback.
package exotel

// Package twilio speaks the Twilio Programmable Messaging (SMS) wire format:
// it computes and verifies X-Twilio-Signature over the public callback URL
// and the form parameters, parses inbound SMS/MMS webhooks and message status
// callbacks into the actors' input, and sends messages through the REST API
// with a client that classifies Twilio's errors for the provider actor.
//
// SMS has no templates: a send that carries a template goes out as the text
// "<template name>: <params joined by ', '>" (just the name when it has no
// parameters).
package twilio

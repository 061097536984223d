// Package whatsapp speaks the Meta WhatsApp Cloud API wire format: it verifies
// webhook signatures and the subscription handshake, parses webhook
// notifications (messages of every type and delivery statuses) into the
// actors' input, and sends text and template messages through the Graph API
// with a client that classifies Meta's errors for the provider actor.
package whatsapp

package whatsapp

import (
	"encoding/json"
	"strconv"
	"strings"

	"urva/actors"
	"urva/persistence"
)

// Inbound maps the notification to the actors' input, in order: for every
// change, its messages, then its statuses. Changes other than "messages" are
// skipped. Call it on a Notification returned by Parse.
func (n *Notification) Inbound() []actors.Inbound {
	count := 0
	for i := range n.Entries {
		for j := range n.Entries[i].Changes {
			if v := n.Entries[i].Changes[j].Value; v != nil {
				count += len(v.Messages) + len(v.Statuses)
			}
		}
	}
	out := make([]actors.Inbound, 0, count)
	for i := range n.Entries {
		for j := range n.Entries[i].Changes {
			v := n.Entries[i].Changes[j].Value
			if v == nil {
				continue
			}
			business := "+" + digits(v.Metadata.DisplayPhoneNumber)
			for k := range v.Messages {
				m := &v.Messages[k]
				out = append(out, actors.Inbound{
					Key: persistence.ConversationKey{
						Channel:        persistence.ChannelWhatsApp,
						BusinessNumber: business,
						ContactPhone:   "+" + digits(m.From),
					},
					ContactName: v.contactName(m.From),
					Message:     m.stored(),
				})
			}
			for k := range v.Statuses {
				s := &v.Statuses[k]
				out = append(out, actors.Inbound{
					Key: persistence.ConversationKey{
						Channel:        persistence.ChannelWhatsApp,
						BusinessNumber: business,
						ContactPhone:   "+" + digits(s.RecipientID),
					},
					Status: s.change(),
				})
			}
		}
	}
	return out
}

// contactName finds the sender's profile name: by wa_id, then by digits, then
// the only contact of a change that carries a single message.
func (v *Value) contactName(from string) string {
	for i := range v.Contacts {
		if v.Contacts[i].WaID == from {
			return v.Contacts[i].Profile.Name
		}
	}
	d := digits(from)
	for i := range v.Contacts {
		if digits(v.Contacts[i].WaID) == d {
			return v.Contacts[i].Profile.Name
		}
	}
	if len(v.Contacts) == 1 && len(v.Messages) == 1 {
		return v.Contacts[0].Profile.Name
	}
	return ""
}

// Types of messages with special handling.
const (
	TypeText        = "text"
	TypeImage       = "image"
	TypeVideo       = "video"
	TypeSticker     = "sticker"
	TypeDocument    = "document"
	TypeAudio       = "audio"
	TypeLocation    = "location"
	TypeContacts    = "contacts"
	TypeInteractive = "interactive"
	TypeButton      = "button"
	TypeReaction    = "reaction"
	TypeSystem      = "system"
	TypeUnsupported = "unsupported"
	TypeUnknown     = "unknown"
)

// stored renders the message as the row the conversation actor stores.
func (m *Message) stored() *persistence.Message {
	pm := &persistence.Message{
		Direction:         persistence.DirectionIn,
		Channel:           persistence.ChannelWhatsApp,
		Type:              m.Type,
		Payload:           m.Raw,
		ProviderMessageID: m.ID,
		ProviderTimestamp: m.Time,
		Status:            persistence.StatusReceived,
	}
	if pm.Type == "" {
		pm.Type = TypeUnknown
	}
	media := func(md *Media) {
		if md == nil {
			return
		}
		pm.Text = md.Caption
		pm.Media = []persistence.Media{{
			ProviderMediaID: md.ID,
			URL:             md.URL,
			MimeType:        md.MimeType,
			SHA256:          md.SHA256,
			Filename:        md.Filename,
			Caption:         md.Caption,
			Voice:           md.Voice,
		}}
	}
	switch m.Type {
	case TypeText:
		if m.Text != nil {
			pm.Text = m.Text.Body
		}
	case TypeImage:
		media(m.Image)
	case TypeVideo:
		media(m.Video)
	case TypeSticker:
		media(m.Sticker)
	case TypeDocument:
		media(m.Document)
	case TypeAudio:
		media(m.Audio)
	case TypeLocation:
		if l := m.Location; l != nil {
			pm.Text = locationText(l)
		}
	case TypeContacts:
		pm.Text = contactsText(m.Contacts)
	case TypeInteractive:
		if it := m.Interactive; it != nil {
			switch {
			case it.ButtonReply != nil:
				pm.Text = it.ButtonReply.Title
			case it.ListReply != nil:
				pm.Text = it.ListReply.Title
			case it.NFMReply != nil:
				pm.Text = it.NFMReply.Body
			}
		}
	case TypeButton:
		if m.Button != nil {
			pm.Text = m.Button.Text
		}
	case TypeReaction:
		if m.Reaction != nil {
			pm.Text = m.Reaction.Emoji
		}
	case TypeSystem:
		if m.System != nil {
			pm.Text = m.System.Body
		}
	case TypeUnsupported, TypeUnknown:
		if len(m.Errors) > 0 {
			if d := m.Errors[0].Detail(); d != "" {
				pm.Text = d
			} else {
				pm.Text = m.Errors[0].Title
			}
		}
	}
	return pm
}

func locationText(l *Location) string {
	switch {
	case l.Name != "" && l.Address != "":
		return l.Name + ", " + l.Address
	case l.Name != "":
		return l.Name
	case l.Address != "":
		return l.Address
	}
	return "Location " + strconv.FormatFloat(l.Latitude, 'f', 6, 64) + "," + strconv.FormatFloat(l.Longitude, 'f', 6, 64)
}

func contactsText(cs []SharedContact) string {
	switch len(cs) {
	case 0:
		return "Contact card"
	case 1:
		return "Contact: " + describeContact(&cs[0])
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(len(cs)))
	b.WriteString(" contacts: ")
	for i := range cs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(describeContact(&cs[i]))
	}
	return b.String()
}

func describeContact(c *SharedContact) string {
	name := c.Name.FormattedName
	if name == "" {
		name = strings.TrimSpace(c.Name.FirstName + " " + c.Name.LastName)
	}
	phone := ""
	if len(c.Phones) > 0 {
		phone = c.Phones[0].Phone
		if phone == "" && c.Phones[0].WaID != "" {
			phone = "+" + c.Phones[0].WaID
		}
	}
	switch {
	case name != "" && phone != "":
		return name + " " + phone
	case name != "":
		return name
	case phone != "":
		return phone
	}
	return "unnamed"
}

// Status values as stored.
const (
	StatusSent      = "sent"
	StatusDelivered = "delivered"
	StatusRead      = "read"
	StatusFailed    = "failed"
	StatusPlayed    = "played"
)

// statusError is the stored shape of a status failure.
type statusError struct {
	Code    string `json:"code"`
	Title   string `json:"title"`
	Message string `json:"message"`
	Details string `json:"details"`
}

// change renders the status as the actors' status change.
func (s *Status) change() *persistence.StatusChange {
	st := strings.ToLower(s.Status)
	if st == StatusPlayed {
		st = StatusRead
	}
	sc := &persistence.StatusChange{
		ProviderMessageID: s.ID,
		Status:            st,
		At:                s.Time,
		Raw:               s.Raw,
	}
	if len(s.Errors) > 0 {
		e := &s.Errors[0]
		b, err := json.Marshal(statusError{Code: string(e.Code), Title: e.Title, Message: e.Message, Details: e.Detail()})
		if err == nil {
			sc.Error = b
		}
	}
	return sc
}

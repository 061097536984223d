package crm_test

import (
	"urva/actors"
	"urva/transport/crm"
)

// OutboxSender is the CRM sync actor's sender.
var _ actors.CRMSender = crm.OutboxSender{}

package mailbox

import "switchyard/stats"

// ReasonCoDel counts the packets of the batches the codel policy dropped at
// the head because they had waited too long (codel.go); a full codel
// mailbox still drops the arriving batch as mailbox_full.
var ReasonCoDel = stats.NewReason("codel")

// Package shm carries packet batches between a daemon and a protocol host
// on the same machine through shared memory, in the style of memif and
// AF_XDP. It is the data path only: spawning, OPEN/close, supervision and
// stats stay on the control connection.
//
// # The region
//
// One region per host incarnation, created and owned by the daemon: a
// memfd sealed against shrink, grow and further seals (so no mapping of it
// can fault past its end), holding a header, four single-producer
// single-consumer rings of descriptors {slot, len, generation} (indices,
// never pointers), and slots of a pool buffer's size by default (layout.go).
//
//	daemon → host   TX ring: packets in TX slots; completion ring: TX slots back
//	host → daemon   fill ring: empty RX slots lent; RX ring: filled RX slots back
//
// Which slot is lent, for what and under which generation lives only in the
// daemon's heap (slots.go). Every index and descriptor the host writes is
// read once and checked against it; a packet is copied out of the host's
// slot before anything parses it. A broken rule is a *Violation (wrapping
// ErrMalformed), latched: the region carries nothing more.
//
// Doorbells are a Unix socketpair with a sleeping flag per side in the
// header: a producer rings only a consumer that said it sleeps, so
// streaming traffic rarely rings. bell.go says why not an eventfd.
//
// # Lifecycle, daemon side
//
//  1. d, err := shm.New(shm.Config{}) for each host incarnation.
//  2. Hand over: files, _ := d.HostFiles(); put files.List() in the host's
//     exec.Cmd.ExtraFiles (the host calls shm.Attach(shm.InheritedFiles(3+i))
//     for ExtraFiles index i), and files.Close() after Start. A host the
//     daemon did not spawn gets them through a Listener (Listen in the
//     runtime directory, HandOver with a fresh Nonce sent in the OPEN; the
//     host calls Dial then Attach). The host reports Host.ID in its OPEN;
//     the daemon accepts only d.ID(), which binds the control connection to
//     this incarnation.
//  3. On the remote protocol's actor: Send(batch, from). On a dedicated
//     goroutine: loop on Wait; EventReceive → Receive into a batch of the
//     daemon's pool and send it on (the injector's mailbox); EventSlots →
//     tell the actor to flush what it staged.
//  4. Wait returns ErrPeerGone when the host dies (its doorbell end closes:
//     at once, for kill -9 too), after everything it published was
//     reported; keep calling Receive on EventReceive until then. Then
//     Reclaim and count Lost.TXPackets as host_lost; Close; go to 1 for the
//     restarted host.
//  5. A *Violation from any call: count malformed, kill the host, Reclaim,
//     Close, restart.
//
// # Ownership
//
//   - Daemon.Send borrows the batch: it copies packets into slots and the
//     batch stays the caller's (release it once sent, or keep it staged).
//   - Daemon.Receive borrows dst, a batch of the daemon's pool owned by the
//     caller, and appends buffers of that pool to it: they are the caller's.
//   - Host.Receive: as Daemon.Receive, with the host's pool.
//   - Host.Borrow returns views of TX slots, valid until Complete; Host.Send
//     borrows its buffers (copies them); Host.Reserve/Commit lend and take
//     back views of fill slots.
//   - No call keeps a reference to a batch or buffer after it returns, and
//     nothing in this package holds pool buffers, so a host's death can never
//     leak the daemon's pool.
//
// # Drops and back-pressure
//
// Send never blocks. It returns the index of the first packet it could not
// place (every TX slot is in the host's hands): the caller's policy decides.
// drop_newest drops packets next.. of the batch. drop_oldest keeps the batch
// in a bounded staging queue (descriptors already published cannot be
// recalled), drops the oldest staged batch's unsent packets when the queue
// is full, and calls Send(batch, cursor) again on EventSlots. ErrOversized
// names one packet longer than a slot: drop it (oversized) and go on from
// the next. Receive returns ErrNoBuffers without consuming anything when the
// daemon's pool is empty: the packets wait on the ring and the host, short
// of fill slots, applies its own policy.
//
// # Accounting
//
// Counts holds exactly, whenever it is read: TXHanded = TXCompleted +
// TXLost + TXInFlight, per packet (one packet per slot). TXInFlight is what a host death would
// lose; Reclaim moves it to TXLost and reports it. In the other direction a
// packet exists for the daemon once the host publishes it, and it survives
// the host: drain with Receive before Reclaim (Lost.RXUnread counts what was
// left). A watchdog declares a host stuck when TXInFlight > 0 and
// TXCompleted has not moved for its timeout.
//
// # Concurrency
//
// Each end has a TX half and an RX half, each serialized by its own mutex,
// so the actor that sends and the goroutine that waits and receives never
// contend. Wait is for one goroutine at a time; it blocks its thread in
// read(2). Counts, Close and Reclaim may be called from anywhere. Close
// wakes the waiter, waits for it to leave and unmaps.
package shm

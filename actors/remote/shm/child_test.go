//go:build linux

package shm

// Tests across a real process boundary: the test binary, started again
// with hostModeEnv set, is the host (childMain). It inherits the region and
// its doorbell end as descriptors 3 and 4, as a spawned host would.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"switchyard/packet"
)

// childMain runs the test binary as a protocol host and returns its exit
// status.
func childMain(mode string) int {
	if mode == "dial" { // a host the daemon did not spawn (handover_test.go)
		if err := dialHost(); err != nil && !errors.Is(err, ErrPeerGone) {
			fmt.Fprintln(os.Stderr, "host dial:", err)
			return 1
		}
		return 0
	}
	h, err := Attach(InheritedFiles(3))
	if err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		return 1
	}
	if mode == "echo" {
		err = echoHost(h)
	} else {
		err = hostile(h, mode)
	}
	if err != nil && !errors.Is(err, ErrPeerGone) {
		fmt.Fprintf(os.Stderr, "host %s: %v\n", mode, err)
		return 1
	}
	return 0
}

// echoHost sends back every packet it receives (by views: Borrow, Send,
// Complete) until the daemon goes away.
func echoHost(h *Host) error {
	views := make([][]byte, packet.MaxBatch)
	for {
		if _, err := h.Wait(); err != nil {
			return err
		}
		for {
			n, err := h.Borrow(views)
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
			for sent := 0; sent < n; {
				k, err := h.Send(views[sent:n])
				if err != nil {
					return err
				}
				if sent += k; sent < n {
					ev, err := h.Wait() // for fill slots
					if err != nil {
						return err
					}
					if ev&EventSlots == 0 {
						time.Sleep(20 * time.Microsecond)
					}
				}
			}
			if err := h.Complete(n); err != nil {
				return err
			}
		}
	}
}

// hostile breaks the protocol as mode says, tells the test on stdout what it
// did, and stays until the daemon goes away.
func hostile(h *Host, mode string) error {
	rx := &h.reg.rings[ringRX]
	maxLen := uint32(h.MaxPacketBytes())
	// fill takes one slot lent on the fill ring the honest way.
	fill := func() desc {
		if err := h.takeFill(1); err != nil || len(h.reserved) == 0 {
			panic(fmt.Sprintf("no fill slot: %v", err))
		}
		d := h.reserved[0]
		h.reserved = h.reserved[1:]
		return d
	}
	publish := func(d desc) {
		publishRaw(rx, d)
		h.bell.ring(bellReceive)
	}
	// honest publishes n stamped packets of 1000 bytes.
	honest := func(n int) {
		pool := packet.NewPool(packet.MaxBatch)
		b := batchOf(nopTB{}, pool, 100, repeat(n, 1000)...)
		if sent, err := h.Send(b.Bufs); sent != n || err != nil {
			panic(fmt.Sprintf("send = %d, %v", sent, err))
		}
		b.Release()
	}
	waitTX := func() {
		for h.reg.rings[ringTX].hdr.prod.Load() == h.txCons {
			if _, err := h.Wait(); err != nil {
				panic(err)
			}
		}
	}
	switch mode {
	case "garbage-slot":
		d := fill()
		d.slot, d.len = 1<<20, 10
		publish(d)
	case "wrong-gen":
		d := fill()
		d.gen += 7
		d.len = 10
		publish(d)
	case "too-long":
		d := fill()
		d.len = maxLen + 1
		publish(d)
	case "rx-index":
		rx.hdr.prod.Store(rx.hdr.cons.Load() + h.reg.l.ringEntries + 1)
		h.bell.ring(bellReceive)
	case "replay":
		waitTX()
		views := make([][]byte, packet.MaxBatch)
		n, err := h.Borrow(views)
		if err != nil || n == 0 {
			panic(fmt.Sprintf("borrow = %d, %v", n, err))
		}
		last := h.borrowed[n-1]
		h.Complete(n)
		publishRaw(&h.reg.rings[ringCompletion], last) // the same completion again
	case "tx-cons":
		waitTX()
		tx := &h.reg.rings[ringTX]
		tx.hdr.cons.Store(tx.hdr.prod.Load() + 100)
	case "flood":
		fmt.Println("flooding")
		for {
			if _, err := unix.Write(h.bell.fd, make([]byte, 256)); err != nil {
				return nil
			}
		}
	case "slow-flood": // ring once per invitation, as an honest host would, but publish nothing
		for {
			if v := h.reg.daemonSleep.Load(); v != 0 && h.reg.daemonSleep.CompareAndSwap(v, 0) {
				if _, err := unix.Write(h.bell.fd, []byte{1}); err != nil {
					return nil
				}
			}
			runtime.Gosched()
		}
	case "scribble-slots":
		honest(8)
		fmt.Println("published")
		for { // every RX slot, forever: the daemon's copy must not move
			for s := h.reg.l.txSlots; s < h.reg.l.txSlots+h.reg.l.rxSlots; s++ {
				slot := h.reg.slot(s)
				for i := range slot {
					slot[i] = 0xee
				}
			}
		}
	case "scribble-descs":
		honest(8)
		fmt.Println("published")
		for i := uint32(0); ; i++ {
			e := rx.at(i)
			switch rand.IntN(4) {
			case 0:
				atomic.StoreUint32(&e.len, rand.Uint32N(2*maxLen))
			case 1:
				atomic.StoreUint32(&e.slot, rand.Uint32())
			case 2:
				atomic.StoreUint32(&e.gen, rand.Uint32N(4))
			case 3:
				rx.hdr.prod.Store(rx.hdr.cons.Load() + rand.Uint32N(2*h.reg.l.ringEntries))
			}
			h.bell.ring(bellReceive)
		}
	case "truncate":
		fd := int(h.files.Region.Fd())
		size := int64(h.reg.l.size)
		_, sealErr := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_WRITE)
		// Punching a hole is allowed (only a write seal forbids it): the
		// pages read as zeros afterwards, never fault.
		punchErr := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(h.reg.l.slotsOff), size-int64(h.reg.l.slotsOff))
		fmt.Printf("shrink=%v grow=%v seal=%v punch=%v\n",
			errString(unix.Ftruncate(fd, 0)), errString(unix.Ftruncate(fd, 2*size)), errString(sealErr), errString(punchErr))
		honest(1)
	default:
		return fmt.Errorf("unknown host mode %q", mode)
	}
	for {
		if _, err := h.Wait(); err != nil {
			return err
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

// nopTB lets batchOf run in the child, outside a test.
type nopTB struct{ testing.TB }

func (nopTB) Helper()               {}
func (nopTB) Fatalf(string, ...any) { panic("batchOf failed in the host") }

// child is a host process and its stdout, line by line.
type child struct {
	cmd   *exec.Cmd
	lines chan string
	done  chan struct{} // closed once the host exited
	err   error         // its exit status, once done
}

// startHost spawns the test binary as a host of d in mode.
func startHost(t *testing.T, d *Daemon, mode string) *child {
	t.Helper()
	files, err := d.HostFiles()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), hostModeEnv+"="+mode)
	cmd.ExtraFiles = files.List()
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The host holds the only other doorbell end now: its death is our
	// end of file.
	files.Close()
	c := &child{cmd: cmd, lines: make(chan string, 16), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
		c.err = cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		for range c.lines {
		}
		<-c.done
	})
	return c
}

func (c *child) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatal("host exited without a word")
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatal("host said nothing for 20 s")
	}
	return ""
}

// waitFor runs d.Wait with a time limit (closing d if it passes).
func waitFor(t *testing.T, d *Daemon, limit time.Duration) (Event, error) {
	t.Helper()
	type result struct {
		ev  Event
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ev, err := d.Wait()
		ch <- result{ev, err}
	}()
	select {
	case r := <-ch:
		return r.ev, r.err
	case <-time.After(limit):
		d.Close()
		<-ch
		t.Fatalf("no event within %v", limit)
	}
	return 0, nil
}

// traffic drives a daemon: a sender goroutine and a receiver goroutine (the
// one that waits), as the remote transport will.
type traffic struct {
	d        *Daemon
	pool     *packet.Pool
	lossless bool          // stage what does not fit and retry; else drop it
	total    uint64        // packets to send; 0 until stopped
	stop     chan struct{} // ends the sender

	handed, dropped atomic.Uint64 // by the sender
	received        atomic.Uint64
	ended           chan struct{} // closed when the receiver's Wait failed
	waitErr         error         // why; read after ended
	endedAt         time.Time
	wg              sync.WaitGroup
	errs            chan error
}

func (tr *traffic) start() {
	tr.stop = make(chan struct{})
	tr.ended = make(chan struct{})
	tr.errs = make(chan error, 2)
	slots := make(chan struct{}, 1)
	tr.wg.Add(2)
	go func() { // the receiver
		defer tr.wg.Done()
		last := int64(-1)
		for {
			ev, err := tr.d.Wait()
			if err != nil {
				tr.waitErr, tr.endedAt = err, time.Now()
				close(tr.ended)
				return
			}
			if ev&EventSlots != 0 {
				select {
				case slots <- struct{}{}:
				default:
				}
			}
			if ev&EventReceive == 0 {
				continue
			}
			b := tr.pool.GetBatch()
			_, err = tr.d.Receive(b)
			for i := range b.Len() {
				pkt := b.Packet(i)
				seq := seqOf(pkt)
				if err := checkStamp(pkt, seq); err != nil || int64(seq) <= last || tr.lossless && int64(seq) != last+1 {
					tr.errs <- fmt.Errorf("received packet %d after %d: %v", seq, last, err)
					b.Release()
					return
				}
				last = int64(seq)
			}
			tr.received.Add(uint64(b.Len()))
			b.Release()
			if err != nil && !errors.Is(err, ErrNoBuffers) {
				tr.errs <- fmt.Errorf("receive: %w", err)
				return
			}
		}
	}()
	go func() { // the sender
		defer tr.wg.Done()
		seq := uint64(0)
		for tr.total == 0 || seq < tr.total {
			select {
			case <-tr.stop:
				return
			default:
			}
			n := packet.MaxBatch
			if tr.total > 0 {
				n = min(n, int(tr.total-seq))
			}
			lens := make([]int, n)
			for i := range lens {
				lens[i] = 8 + rand.IntN(1400)
			}
			b := batchOf(nopTB{}, tr.pool, seq, lens...)
			for from := 0; from < n; {
				next, err := tr.d.Send(b, from)
				tr.handed.Add(uint64(next - from))
				if err != nil {
					tr.dropped.Add(uint64(n - next))
					b.Release()
					if !errors.Is(err, ErrReclaimed) && !errors.Is(err, ErrClosed) {
						tr.errs <- fmt.Errorf("send: %w", err)
					}
					return
				}
				from = next
				if from < n && !tr.lossless { // drop_newest: the rest of the batch
					tr.dropped.Add(uint64(n - from))
					break
				}
				if from < n {
					select {
					case <-slots:
					case <-tr.stop:
						tr.dropped.Add(uint64(n - from))
						b.Release()
						return
					case <-time.After(10 * time.Millisecond):
					}
				}
			}
			b.Release()
			seq += uint64(n)
			if !tr.lossless {
				time.Sleep(50 * time.Microsecond) // leave the host some of the two cores
			}
		}
	}()
}

// TestChildEcho: 100 000 packets to a host process and back, in order,
// nothing lost, the counts exact.
func TestChildEcho(t *testing.T) {
	const total = 100000
	d, err := New(Config{SlotBytes: 2048, TXSlots: 256, RXSlots: 256})
	if err != nil {
		t.Fatal(err)
	}
	c := startHost(t, d, "echo")
	tr := &traffic{d: d, pool: packet.NewPool(2048), lossless: true, total: total}
	tr.start()
	deadline := time.Now().Add(60 * time.Second)
	for tr.received.Load() < total && time.Now().Before(deadline) && len(tr.errs) == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if got := tr.received.Load(); got != total {
		d.Close()
		tr.wg.Wait()
		t.Fatalf("received %d of %d: %v; counts %+v", got, total, drain(tr.errs), d.Counts())
	}
	d.Close() // the host sees end of file and exits
	tr.wg.Wait()
	select {
	case <-c.done:
		if c.err != nil {
			t.Fatalf("host exit: %v", c.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the host did not exit after the daemon closed")
	}
	if err := drain(tr.errs); err != nil {
		t.Fatal(err)
	}
	c2 := d.Counts()
	checkConservation(t, c2)
	if c2.TXHanded != total || c2.RXReceived != total || tr.dropped.Load() != 0 {
		t.Fatalf("counts %+v, dropped %d: want %d handed and received", c2, tr.dropped.Load(), total)
	}
	if err := tr.pool.CheckLeaks(); err != nil {
		t.Fatal(err)
	}
}

func drain(errs chan error) error {
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// TestChildKilled: kill -9 of a host in mid-stream is seen at once (end of
// file on the doorbell), what it published is delivered, and Reclaim gets
// every slot back with exact counts: handed = completed + lost. Five kills,
// each host with a fresh region, as a restarted host gets.
func TestChildKilled(t *testing.T) {
	for kill := 0; kill < 5; kill++ {
		d, err := New(Config{SlotBytes: 2048, TXSlots: 256, RXSlots: 256})
		if err != nil {
			t.Fatal(err)
		}
		c := startHost(t, d, "echo")
		tr := &traffic{d: d, pool: packet.NewPool(2048)}
		tr.start()
		// Kill once traffic flows, at a different moment each time.
		for deadline := time.Now().Add(30 * time.Second); tr.received.Load() < uint64(2000+kill*3000); time.Sleep(time.Millisecond) {
			if len(tr.errs) > 0 || time.Now().After(deadline) {
				t.Fatalf("kill %d: traffic did not flow: %v; counts %+v", kill, drain(tr.errs), d.Counts())
			}
		}
		killedAt := time.Now()
		if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// The receiver drains what the host published and stops on end of file.
		select {
		case <-tr.ended:
		case <-time.After(10 * time.Second):
			d.Close()
		}
		close(tr.stop)
		tr.wg.Wait()
		if !errors.Is(tr.waitErr, ErrPeerGone) {
			t.Fatalf("kill %d: wait ended with %v, want ErrPeerGone", kill, tr.waitErr)
		}
		noticed := tr.endedAt.Sub(killedAt)
		if err := drain(tr.errs); err != nil {
			t.Fatalf("kill %d: %v", kill, err)
		}
		before := d.Counts()
		lost := d.Reclaim()
		after := d.Counts()
		t.Logf("kill %d: noticed after %v; handed %d = completed %d + lost %d; received %d; dropped at the sender %d; fill slots back %d",
			kill, noticed.Round(time.Microsecond), after.TXHanded, after.TXCompleted, after.TXLost, after.RXReceived, tr.dropped.Load(), lost.FillSlots)
		checkConservation(t, after)
		switch {
		case after.TXHanded != tr.handed.Load():
			t.Fatalf("kill %d: daemon handed %d, sender counted %d", kill, after.TXHanded, tr.handed.Load())
		case lost.TXPackets != before.TXInFlight || after.TXLost != uint64(lost.TXPackets):
			t.Fatalf("kill %d: lost %+v, in flight before %d", kill, lost, before.TXInFlight)
		case after.TXInFlight != 0 || after.TXFree != 256 || after.FillLent != 0 || lost.FillSlots != before.FillLent:
			t.Fatalf("kill %d: slots not all back: %+v (lost %+v)", kill, after, lost)
		case lost.RXUnread != 0:
			t.Fatalf("kill %d: %d published packets left unread after draining", kill, lost.RXUnread)
		case after.RXReceived != tr.received.Load():
			t.Fatalf("kill %d: daemon received %d, receiver counted %d", kill, after.RXReceived, tr.received.Load())
		case noticed > time.Second:
			t.Fatalf("kill %d: noticed after %v", kill, noticed)
		}
		if err := tr.pool.CheckLeaks(); err != nil {
			t.Fatal(err)
		}
		d.Close()
	}
}

// TestHostileHost: a host process that breaks the protocol on purpose. Each
// attack is detected, reported as the rule it breaks, and the daemon never
// panics (a panic or SIGBUS would kill this test binary).
func TestHostileHost(t *testing.T) {
	cfg := Config{SlotBytes: 2048, TXSlots: 16, RXSlots: 16}
	receive := func(t *testing.T, d *Daemon) error {
		t.Helper()
		pool := packet.NewPool(512)
		if _, err := waitFor(t, d, 20*time.Second); err != nil {
			return err
		}
		b := pool.GetBatch()
		defer b.Release()
		_, err := d.Receive(b)
		return err
	}
	// send sends a batch, then reaps until the violation shows (the host
	// answers in its own time).
	send := func(t *testing.T, d *Daemon) error {
		t.Helper()
		pool := packet.NewPool(512)
		b := batchOf(t, pool, 0, repeat(4, 100)...)
		defer b.Release()
		if _, err := d.Send(b, 0); err != nil {
			return err
		}
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if _, err := d.Send(b, 0); err != nil {
				return err
			}
		}
		t.Fatal("no violation within 20 s")
		return nil
	}
	// reap sends one batch, then only reaps until the violation shows:
	// the slots the host completed honestly are free by then.
	reap := func(t *testing.T, d *Daemon) error {
		t.Helper()
		pool := packet.NewPool(512)
		b := batchOf(t, pool, 0, repeat(4, 100)...)
		defer b.Release()
		if _, err := d.Send(b, 0); err != nil {
			return err
		}
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if _, err := d.Reap(); err != nil {
				return err
			}
		}
		t.Fatal("no violation within 20 s")
		return nil
	}
	for _, c := range []struct {
		mode string
		run  func(t *testing.T, d *Daemon) error
		kind Kind
		ring string
	}{
		{"garbage-slot", receive, SlotRange, "rx"},
		{"wrong-gen", receive, Generation, "rx"},
		{"too-long", receive, Length, "rx"},
		{"rx-index", receive, IndexAdvance, "rx"},
		{"replay", reap, NotLent, "completion"},
		{"tx-cons", send, IndexAdvance, "tx"},
		{"flood", func(t *testing.T, d *Daemon) error {
			_, err := waitFor(t, d, 20*time.Second)
			return err
		}, DoorbellFlood, "doorbell"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			d, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			startHost(t, d, c.mode)
			err = c.run(t, d)
			v := wantViolation(t, err, c.kind, c.ring)
			t.Log(v)
			// Latched: nothing more is read from this host.
			if _, again := d.Send(batchOf(t, packet.NewPool(512), 0, 1), 0); again != error(v) {
				t.Fatalf("send after the violation: %v", again)
			}
			lost := d.Reclaim()
			checkConservation(t, d.Counts())
			if c := d.Counts(); c.TXInFlight != 0 || c.FillLent != 0 {
				t.Fatalf("after reclaim %+v (lost %+v)", c, lost)
			}
		})
	}

	// A host that rings exactly when invited but publishes nothing cannot
	// be told from a rare honest race, so it is throttled, not reported:
	// the waiter must not spin.
	t.Run("slow-flood", func(t *testing.T) {
		d, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		startHost(t, d, "slow-flood")
		done := make(chan error, 1)
		go func() {
			_, err := d.Wait()
			done <- err
		}()
		time.Sleep(500 * time.Millisecond)
		c := d.Counts()
		d.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("wait: %v, want ErrClosed", err)
		}
		t.Logf("in 500 ms: %d sleeps, %d throttled", c.Sleeps, c.Throttled)
		if c.Throttled == 0 || c.Sleeps > 1000 {
			t.Fatalf("%d sleeps, %d throttled in 500 ms: want throttled, at most ~500+%d sleeps", c.Sleeps, c.Throttled, MaxEmptyWakes)
		}
	})

	t.Run("scribble-slots", func(t *testing.T) {
		d, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		c := startHost(t, d, "scribble-slots")
		c.line(t) // published, now scribbling
		pool := packet.NewPool(512)
		b := pool.GetBatch()
		defer b.Release()
		for b.Len() < 8 {
			if _, err := waitFor(t, d, 20*time.Second); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Receive(b); err != nil {
				t.Fatal(err)
			}
		}
		copies := make([][]byte, b.Len())
		for i := range copies {
			if len(b.Packet(i)) != 1000 {
				t.Fatalf("packet %d: %d bytes, want the 1000 published", i, len(b.Packet(i)))
			}
			copies[i] = bytes.Clone(b.Packet(i))
		}
		// The host keeps writing 0xee over every RX slot; the daemon's
		// copies stay as they were when taken.
		scribbled := false
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !scribbled; time.Sleep(time.Millisecond) {
			s := d.reg.slot(d.reg.l.txSlots)
			scribbled = s[packet.Headroom] == 0xee && s[len(s)-1] == 0xee
		}
		if !scribbled {
			t.Fatal("the host never scribbled")
		}
		time.Sleep(20 * time.Millisecond)
		for i := range copies {
			if !bytes.Equal(b.Packet(i), copies[i]) {
				t.Fatalf("packet %d changed after Receive copied it", i)
			}
		}
	})

	t.Run("scribble-descs", func(t *testing.T) {
		d, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		c := startHost(t, d, "scribble-descs")
		c.line(t)
		pool := packet.NewPool(512)
		var err2 error
		got := 0
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && err2 == nil; {
			b := pool.GetBatch()
			_, err2 = d.Receive(b)
			for i := range b.Len() {
				if len(b.Packet(i)) > d.MaxPacketBytes() {
					t.Fatalf("accepted a packet of %d bytes", len(b.Packet(i)))
				}
			}
			got += b.Len()
			b.Release()
		}
		var v *Violation
		if !errors.As(err2, &v) {
			t.Fatalf("receive: %v, want a violation", err2)
		}
		t.Logf("%d packets accepted, then %v", got, v)
		if err := pool.CheckLeaks(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("truncate", func(t *testing.T) {
		d, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		c := startHost(t, d, "truncate")
		report := c.line(t)
		t.Log(report)
		for _, want := range []string{"shrink=operation_not_permitted", "grow=operation_not_permitted", "seal=operation_not_permitted", "punch=ok"} {
			if !strings.Contains(report, want) {
				t.Errorf("host report %q: want %s", report, want)
			}
		}
		pool := packet.NewPool(512)
		b := pool.GetBatch()
		defer b.Release()
		for b.Len() < 1 {
			if _, err := waitFor(t, d, 20*time.Second); err != nil {
				t.Fatal(err)
			}
			if _, err := d.Receive(b); err != nil {
				t.Fatal(err)
			}
		}
		if err := checkStamp(b.Packet(0), 100); err != nil {
			t.Fatal(err)
		}
		// Every page of the daemon's mapping is still there: no SIGBUS.
		sum := 0
		for off := 0; off < len(d.reg.mem); off += PageBytes {
			sum += int(d.reg.mem[off])
		}
		sum += int(d.reg.mem[len(d.reg.mem)-1])
		t.Logf("read %d pages after the host's attempts (sum %d)", len(d.reg.mem)/PageBytes, sum)
	})
}

package udpbind

import (
	"errors"
	"net"
	"reflect"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// TestLoop: reads go to deliver with their counts, errors to failed, the
// loop pauses only from the second error in a row, and it ends on
// net.ErrClosed or once closing reports true.
func TestLoop(t *testing.T) {
	errBoom := errors.New("boom")
	type step struct {
		n   int
		err error
	}
	tests := []struct {
		name        string
		steps       []step
		closingFrom int // closing() is true from this recv on (0: never)
		wantDeliver []int
		wantFailed  int
		minPause    time.Duration
	}{
		{"reads then closed", []step{{3, nil}, {0, nil}, {128, nil}, {0, net.ErrClosed}}, 0, []int{3, 0, 128}, 0, 0},
		{"one error: no pause", []step{{1, nil}, {0, errBoom}, {2, nil}, {0, net.ErrClosed}}, 0, []int{1, 2}, 1, 0},
		{"errors in a row pause", []step{{0, errBoom}, {0, errBoom}, {0, errBoom}, {0, net.ErrClosed}}, 0, nil, 3, 2 * RecvErrorPause},
		{"an error while closing ends it", []step{{5, nil}, {0, errBoom}, {7, nil}}, 2, []int{5}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i := 0
			recv := func([][]byte, []int, []conn.Endpoint) (int, error) {
				s := tt.steps[i]
				i++
				return s.n, s.err
			}
			var delivered []int
			failed := 0
			start := time.Now()
			Loop(recv, nil, nil, nil,
				func() bool { return tt.closingFrom > 0 && i >= tt.closingFrom },
				func(error) { failed++ },
				func(n int) { delivered = append(delivered, n) })
			if !reflect.DeepEqual(delivered, tt.wantDeliver) {
				t.Errorf("delivered %v, want %v", delivered, tt.wantDeliver)
			}
			if failed != tt.wantFailed {
				t.Errorf("failed %d times, want %d", failed, tt.wantFailed)
			}
			if took := time.Since(start); took < tt.minPause {
				t.Errorf("took %v, want at least %v of pauses", took, tt.minPause)
			}
		})
	}
}

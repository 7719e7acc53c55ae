//go:build linux

package udpbind

import (
	"net"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

// BenchmarkReceive measures the receive path of this bind against
// conn.StdNetBind's on loopback, per datagram of 1200 bytes: "plain" sends
// each datagram alone (one message per datagram), "gso" sends runs of 64
// as one GSO super-datagram that the receiver reads with GRO and splits.
// The sender's cost is included and the same for both.
//
//	go test -run '^$' -bench Receive -benchmem ./protocols/udpbind/
func BenchmarkReceive(b *testing.B) {
	binds := []struct {
		name string
		new  func() conn.Bind
	}{
		{"udpbind", func() conn.Bind { return New(Options{}) }},
		{"stdnetbind", conn.NewStdNetBind},
	}
	for _, mode := range []string{"plain", "gso"} {
		for _, bb := range binds {
			b.Run(mode+"/"+bb.name, func(b *testing.B) { benchReceive(b, bb.new(), mode == "gso") })
		}
	}
}

func benchReceive(b *testing.B, rb conn.Bind, gso bool) {
	const per = 64
	fns, port, err := rb.Open(0)
	if err != nil {
		b.Fatal(err)
	}
	defer rb.Close()
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)}
	plain, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer plain.Close()
	sender := New(Options{})
	if _, _, err := sender.Open(0); err != nil {
		b.Fatal(err)
	}
	defer sender.Close()
	ep := NewEndpoint(to.AddrPort())
	p := payload(1, 1200)
	batch := make([][]byte, per)
	for i := range batch {
		batch[i] = append(make([]byte, 0, 65535), p...)
	}
	bufs, sizes, eps := recvBufs(BatchSize), make([]int, BatchSize), make([]conn.Endpoint, BatchSize)
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += per {
		if gso {
			for i := range batch {
				batch[i] = batch[i][:len(p)]
			}
			if err := sender.Send(batch, ep); err != nil {
				b.Fatal(err)
			}
		} else {
			for i := 0; i < per; i++ {
				if _, err := plain.WriteToUDP(p, to); err != nil {
					b.Fatal(err)
				}
			}
		}
		for got := 0; got < per; {
			n, err := fns[0](bufs, sizes, eps)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
}

package lab

// IPsec bench cases (issue 17): strongSwan 5.9.8 charons with
// kernel-libipsec (PEERS.md: no kernel XFRM here) and switchyard daemons
// with the ipsec protocol, each side's tunnel address on its lo (charon) or
// TUN (daemon), PSK and AES-GCM-256 as the reference pair was measured.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

const (
	// CharonPath is strongSwan's IKE daemon (Debian strongswan-charon).
	CharonPath = "/usr/lib/ipsec/charon"
	// charonLoad: the plugins PEERS.md found to work with kernel-libipsec.
	charonLoad = "random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey kdf gcm aes sha1 sha2 hmac kernel-libipsec kernel-netlink socket-default vici updown"
	// ipsecPSK is the bench's pre-shared key (a lab secret, not a real one).
	ipsecPSK = "switchyard bench psk 2026"
	// charonStartTimeout (15 s) bounds charon's start and the SA's setup.
	charonStartTimeout = 15 * time.Second
)

// startCharon starts charon in side's namespace with its own /run and vici
// socket, loads a PSK connection to peer (initiating it when initiate) and
// returns its process and a stop function.
func (l *Lab) startCharon(ctx context.Context, side, peer *Side, initiate bool) (benchProc, func(), error) {
	dir := filepath.Join(l.Dir, "charon-"+side.Label)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return benchProc{}, nil, err
	}
	if _, _, err := l.Exec(ctx, side, "ip", "addr", "add", side.TUN4.String()+"/32", "dev", "lo"); err != nil {
		return benchProc{}, nil, err
	}
	vici := "unix://" + filepath.Join(dir, "charon.vici")
	conf := fmt.Sprintf("charon {\n  load = %s\n  filelog {\n    f {\n      path = %s\n      default = 1\n      flush_line = yes\n    }\n  }\n"+
		"  plugins {\n    vici {\n      socket = %s\n    }\n  }\n}\n", charonLoad, filepath.Join(dir, "charon.log"), vici)
	if err := os.WriteFile(filepath.Join(dir, "strongswan.conf"), []byte(conf), 0o644); err != nil {
		return benchProc{}, nil, err
	}
	swan := fmt.Sprintf(`connections {
  t {
    version = 2
    local_addrs = %s
    remote_addrs = %s
    encap = yes
    proposals = aes256gcm16-prfsha256-x25519
    local {
      auth = psk
      id = %s.example
    }
    remote {
      auth = psk
      id = %s.example
    }
    children {
      net {
        local_ts = %s/32
        remote_ts = %s/32
        esp_proposals = aes256gcm16
      }
    }
  }
}
secrets {
  ike-t {
    id-l = %s.example
    id-r = %s.example
    secret = %q
  }
}
`, side.Veth4, peer.Veth4, side.Label, peer.Label, side.TUN4, peer.TUN4, side.Label, peer.Label, ipsecPSK)
	swanPath := filepath.Join(dir, "swanctl.conf")
	if err := os.WriteFile(swanPath, []byte(swan), 0o600); err != nil {
		return benchProc{}, nil, err
	}
	// charon's pid file is compiled in as /var/run/charon.pid: each charon
	// gets its own /run (ip netns exec gives a private mount namespace).
	cmd, err := l.Command(ctx, side, "sh", "-c",
		"mount -t tmpfs none /run && exec env STRONGSWAN_CONF="+filepath.Join(dir, "strongswan.conf")+" "+CharonPath)
	if err != nil {
		return benchProc{}, nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "charon.out"))
	if err != nil {
		return benchProc{}, nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return benchProc{}, nil, fmt.Errorf("start charon in %s: %w", side.NS, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); l.Done(cmd); close(done) }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(DaemonStopTimeout):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	deadline := time.Now().Add(charonStartTimeout)
	for {
		_, _, err := l.Exec(ctx, side, "swanctl", "--load-all", "--file", swanPath, "--uri", vici)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return benchProc{}, nil, fmt.Errorf("charon in %s: swanctl --load-all: %w", side.NS, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if initiate {
		if _, _, err := l.Exec(ctx, side, "swanctl", "--initiate", "--child", "net", "--timeout", "15", "--uri", vici); err != nil {
			stop()
			return benchProc{}, nil, fmt.Errorf("charon in %s: swanctl --initiate: %w", side.NS, err)
		}
	}
	return benchProc{name: "charon " + side.Label, pid: cmd.Process.Pid}, stop, nil
}

// IPsecYAML is side's daemon config with one ipsec instance towards peer
// (PSK in pskFile), as initiator or responder.
func (l *Lab) IPsecYAML(side, peer *Side, mode, pskFile, logLevel string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("node:\n  name: gw-%s", side.Label)
	if logLevel != "" {
		w("log:\n  level: %s", logLevel)
	}
	w("admin:\n  listen: %s", side.Admin)
	w("tun:\n  name: %s\n  mtu: 1420\n  addresses: [%s/24]\n  install_routes: true", side.TUNDev, side.TUN4)
	w("batch:\n  max_packets: 128")
	w("routes:\n  - prefix: \"%s/32\"\n    to: site", peer.TUN4)
	w("protocols:\n  - name: site\n    type: ipsec\n    settings:")
	w("      mode: %s\n      local_addrs: %s\n      remote_addrs: %s", mode, side.Veth4, peer.Veth4)
	w("      local_id: %s.example\n      remote_id: %s.example\n      psk_file: %s", side.Label, peer.Label, pskFile)
	w("      proposals: [aes256gcm16-prfsha256-x25519]\n      esp_proposals: [aes256gcm16]")
	w("      local_ts: [%s/32]\n      remote_ts: [%s/32]", side.TUN4, peer.TUN4)
	return b.String()
}

// startIPsecCase starts the two ends of an IPsec case: charon or a
// switchyard daemon on each side (a initiates).
func startIPsecCase(ctx context.Context, l *Lab, c Case) (procs []benchProc, stops []func(), err error) {
	if _, err := os.Stat(CharonPath); err != nil && c.Kind != KindIPsecPair {
		return nil, nil, &Missing{Tool: "charon", Why: "strongswan-charon is not installed (make deps installs it)"}
	}
	psk := filepath.Join(l.Dir, "ipsec.psk")
	if err := os.WriteFile(psk, []byte(ipsecPSK+"\n"), 0o600); err != nil {
		return nil, nil, err
	}
	daemon := func(side, peer *Side, mode string) error {
		d, err := l.StartDaemonYAML(ctx, side, l.IPsecYAML(side, peer, mode, psk, "warn"))
		if err != nil {
			return err
		}
		procs = append(procs, benchProc{name: "switchyard " + side.Label, pid: d.Pid(), daemon: d})
		return nil
	}
	switch c.Kind {
	case KindIPsecStrongSwan:
		// b responds, a initiates.
		for _, s := range []*Side{l.B, l.A} {
			p, stop, err := l.startCharon(ctx, s, l.Peer(s), s == l.A)
			if err != nil {
				return procs, stops, err
			}
			procs, stops = append(procs, p), append(stops, stop)
		}
	case KindIPsecSwitchyardStrongSwan:
		p, stop, err := l.startCharon(ctx, l.B, l.A, false)
		if err != nil {
			return procs, stops, err
		}
		procs, stops = append(procs, p), append(stops, stop)
		if err := daemon(l.A, l.B, "initiator"); err != nil {
			return procs, stops, err
		}
	case KindIPsecPair:
		if err := daemon(l.B, l.A, "responder"); err != nil {
			return procs, stops, err
		}
		if err := daemon(l.A, l.B, "initiator"); err != nil {
			return procs, stops, err
		}
	default:
		return nil, nil, errors.New("not an IPsec case")
	}
	// Side a's process first: reports and the profile (--profile) take it
	// as side a's.
	slices.Reverse(procs)
	return procs, stops, nil
}

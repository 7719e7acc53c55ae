// Package udpbind is the UDP transport the protocols share: a
// golang.zx2c4.com/wireguard/conn.Bind with one socket per family, batched
// with recvmmsg and sendmmsg, UDP GRO on receive and UDP GSO on send, that
// never loses a datagram to an empty one.
//
// Why not conn.StdNetBind: with UDP GRO on, its receive reads into the last
// two slots and splits forward, and it stops splitting at the first empty
// message, so an empty datagram from anyone makes the datagrams after it in
// that read vanish without being reported (issue 12, finding 3). A wrapper
// around its receive function cannot help: the lost datagrams never leave
// it. TestStdNetBindLosesAfterEmpty keeps the evidence; when it starts to
// fail, upstream has fixed the split.
//
// This bind skips empty datagrams and counts them (Options.Stats: in, and
// dropped as "empty"), so that its callers see only datagrams with data:
// the first n slots a receive function returns all have a size > 0.
// Truncated datagrams (larger than the buffer) are counted as malformed.
//
// Endpoints are *Endpoint values. A receive function reuses the endpoint of
// a source it saw recently (a small cache per socket), so steady traffic
// from a few peers allocates nothing per datagram; conn.StdNetBind
// allocates an endpoint, its packet-info and the source address for each.
//
// On systems other than Linux, New returns conn.StdNetBind with its receive
// functions wrapped to skip and count empty datagrams (there it reads one
// datagram per call, without GRO, so nothing is lost after one).
package udpbind

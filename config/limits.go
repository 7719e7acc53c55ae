package config

// Limits of the config. Every number has its unit and its reason.
const (
	// MaxFileBytes (1 MiB) is the largest config file Load and Parse
	// accept. The YAML parser holds every token and node of a file at once,
	// at 100 to 400 bytes of memory per byte of text (measured: 1 MB of a
	// flow list of one-character items took 377 MB and 2.2 s; 1.75 MB of
	// block-style routes 148 MB and 1 s). 1 MiB holds some 24 000 routes in
	// block style (about 43 bytes each), more than twice the 10 000 the
	// route benchmarks use (MaxValues allows 20,000 of them); a larger
	// table is not hand-written YAML.
	MaxFileBytes = 1 << 20

	// MaxValues (100,000 values) bounds the YAML values (scalars, list
	// entries and collections) of a file before it is parsed, since the
	// parser's memory and time grow with them more than with bytes: some
	// 1.6 KB allocated and 7 µs per value in the worst case measured (a
	// flow list of empty mappings), so at most about 160 MB and 1 s. A
	// block-style route counts 5 (the entry, two keys, two values): 20,000
	// routes.
	MaxValues = 100_000

	// MaxEmptyValues (200 values) bounds the empty values of a file: a key
	// or list entry without a value ("install_routes:", "-"). The parser
	// inserts a null token for each by copying every token after it
	// (200,000 of them, 400 KB, took 22 s; 1000 before 200,000 values
	// added 3 s). A config has next to none.
	MaxEmptyValues = 200

	// MaxMappingKeys (1000 keys) bounds the keys of one block mapping.
	// The YAML parser recurses once per key and copies the keys parsed so
	// far at each, so n keys cost O(n²) (20,000 keys of 190 KB took 5.6 s
	// and 1.6 GB); a config's mappings have a few dozen keys.
	MaxMappingKeys = 1000

	// MaxRoutes (1,000,000 routes) bounds the route table a config may
	// declare: a full IPv4 plus IPv6 internet table is about 1.2 million
	// prefixes, and a VPN gateway routes far fewer. A file meets
	// MaxValues first; this bounds a config built in code (Validate).
	MaxRoutes = 1_000_000

	// MaxProtocols (4096 instances) bounds the protocol instances of one
	// node. Each is an actor with its own mailbox, sockets and reader
	// goroutines; peers of one protocol belong inside its settings.
	MaxProtocols = 4096

	// MaxHosts (256 hosts) bounds the protocol hosts of one node. Each is a
	// process and a connection; a host without protocols does nothing, and
	// hundreds of processes on one node are a typo, not a design.
	MaxHosts = 256

	// MaxRemoteWindow (1024 batches) bounds remote.window, the batches in
	// flight per remote protocol actor. The window is what bounds memory on
	// the way to a host (protoactor's outbound queue is unbounded): a batch
	// is up to MaxBatchPackets packets of up to 64 KiB, so 1024 of them can
	// already hold 8 GiB, and past a few dozen a deeper window only adds
	// latency.
	MaxRemoteWindow = 1024

	// MaxProtocolName (32 bytes) is the longest protocol instance name. It
	// appears in actor names, metric labels and log lines.
	MaxProtocolName = 32

	// MaxNodeName (253 bytes) is the longest node name: a fully qualified
	// DNS name, so that a host name can be used as is.
	MaxNodeName = 253

	// MaxIfName (15 bytes) is the longest Linux interface name: IFNAMSIZ
	// (16) less the terminating NUL.
	MaxIfName = 15

	// MinMTU (576 bytes) is the smallest datagram every IPv4 host must
	// accept (RFC 791); a smaller TUN MTU breaks ordinary IPv4 traffic.
	MinMTU = 576

	// MinMTUIPv6 (1280 bytes) is the IPv6 minimum link MTU (RFC 8200); the
	// kernel removes IPv6 from an interface whose MTU is below it.
	MinMTUIPv6 = 1280

	// MaxMTU (65535 bytes) is the largest IP packet (the IPv4 total length
	// field); packet buffers are sized for it.
	MaxMTU = 65535

	// MaxBatchPackets (128 packets) is the most packets per batch: the TUN
	// and UDP batch size of golang.zx2c4.com/wireguard on Linux. It equals
	// packet.MaxBatch (config imports nothing of ours, so it is repeated).
	MaxBatchPackets = 128

	// MinPoolBuffers (128 buffers) is the smallest buffer pool: one full
	// batch, so a reader can always fill a batch.
	MinPoolBuffers = 128

	// MaxPoolBuffers (1<<20 buffers) bounds the buffer pool. A buffer holds
	// a full 64 KiB packet, so even the default 4096 buffers take 256 MiB;
	// beyond a million buffers the number is a typo.
	MaxPoolBuffers = 1 << 20

	// MaxMailboxCapacity (65536 batches) bounds an actor's mailbox. Each
	// queued batch pins up to MaxBatchPackets buffers, so a deeper queue
	// only adds latency (bufferbloat) and starves the pool.
	MaxMailboxCapacity = 65536

	// MaxCoDelInterval (10 s) bounds a codel mailbox's interval: CoDel's
	// window is about a worst-case round trip (RFC 8289 §4.4); a longer
	// one never drops in time to matter and is a typo.
	MaxCoDelInterval = Duration(10e9)

	// MaxRestartRate (10 restarts a second) is the fastest a restart budget
	// (supervision:) may let one failing actor restart: a restart reopens
	// sockets and a device, spawns goroutines and logs. See
	// restartRateProblem for the rule.
	MaxRestartRate = 10

	// MaxErrors (200 errors) is the most errors Parse reports; after that
	// one line says how many more there are. A config with a mistake in
	// every one of a million routes should not print a million lines.
	MaxErrors = 200

	// MaxDepth (100 levels) bounds the nesting of YAML collections. The
	// text is scanned for it before the parser sees it, because the parser
	// costs O(n²) time and memory in the nesting (40,000 levels, 80 KB of
	// text, took 1.9 s and 2.5 GB), and decoding checks it again through
	// aliases, so that hostile input cannot exhaust the stack. A config
	// nests fewer than 10 levels.
	MaxDepth = 100

	// MaxAliasValues (100,000 values) bounds how many values decoding
	// visits through YAML aliases and merge keys, so an alias bomb
	// ("billion laughs": 10 aliases of 10 aliases of … 9 levels deep are a
	// billion values in a few hundred bytes) cannot exhaust time or memory.
	// It holds for the top-level decoding, for all protocol settings blocks
	// of a file together, and for the lookups of positions through merges.
	MaxAliasValues = 100_000

	// MaxAliasBytes (1 MiB) bounds the scalar text that aliases in protocol
	// settings blocks expand to, all blocks together: a remote protocol's
	// block travels to its host with aliases expanded, so one long scalar
	// aliased many times would be copied as many times.
	MaxAliasBytes = 1 << 20
)

// Admin token limits.
const (
	// MinTokenBytes (16 characters) is the shortest admin bearer token
	// accepted: 16 hex digits are 64 bits, the least that resists guessing
	// over the network. `openssl rand -hex 32` gives 64.
	MinTokenBytes = 16

	// MaxTLSFileBytes (1 MiB) is the largest TLS PEM file (CA, certificate
	// or key) read: a CA bundle of a few hundred certificates, where one
	// certificate is 1-2 KB.
	MaxTLSFileBytes = 1 << 20

	// MaxTokenFileBytes (4 KiB) is the largest admin token file read: a
	// token is one header value, and HTTP servers cap headers near that.
	MaxTokenFileBytes = 4096
)

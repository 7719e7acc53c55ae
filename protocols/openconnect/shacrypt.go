package openconnect

// SHA-crypt ($5$ SHA-256, $6$ SHA-512), the password hashes of ocpasswd
// files (Debian's ocpasswd writes $5$), after Ulrich Drepper's
// specification "Unix crypt using SHA-256 and SHA-512". The standard
// library has no crypt(3) and cgo is not used, hence this small
// implementation; tests check it against openssl passwd and ocpasswd.

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"hash"
	"strconv"
	"strings"
)

const (
	cryptRoundsDefault = 5000
	cryptRoundsMin     = 1000
	cryptRoundsMax     = 999999999
	cryptSaltMax       = 16
	cryptAlphabet      = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)

// Byte orders of the final encoding (groups of three bytes, each written as
// four characters; the last group is shorter).
var (
	order256 = [][3]int{{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14}, {15, 25, 5},
		{6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29}}
	order512 = [][3]int{{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4}, {47, 5, 26},
		{6, 27, 48}, {28, 49, 7}, {50, 8, 29}, {9, 30, 51}, {31, 52, 10}, {53, 11, 32}, {12, 33, 54},
		{34, 55, 13}, {56, 14, 35}, {15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19},
		{62, 20, 41}}
)

var errCryptFormat = errors.New("not a $5$ or $6$ crypt hash")

// checkCryptHash reports whether the hash has a form verifyCrypt takes.
func checkCryptHash(h string) error {
	_, _, _, _, err := splitCrypt(h)
	return err
}

// verifyCrypt reports whether password matches the crypt hash h.
func verifyCrypt(password, h string) bool {
	id, rounds, explicit, salt, err := splitCrypt(h)
	if err != nil {
		return false
	}
	got := shaCrypt(id, []byte(password), []byte(salt), rounds, explicit)
	return subtle.ConstantTimeCompare([]byte(got), []byte(h)) == 1
}

// splitCrypt parses $id$[rounds=N$]salt$hash.
func splitCrypt(h string) (id string, rounds int, explicit bool, salt string, err error) {
	parts := strings.Split(h, "$")
	if len(parts) < 4 || parts[0] != "" || (parts[1] != "5" && parts[1] != "6") {
		return "", 0, false, "", errCryptFormat
	}
	id, rest := parts[1], parts[2:]
	rounds = cryptRoundsDefault
	if r, ok := strings.CutPrefix(rest[0], "rounds="); ok {
		n, perr := strconv.Atoi(r)
		if perr != nil || n < 1 {
			return "", 0, false, "", errCryptFormat
		}
		rounds, explicit = min(max(n, cryptRoundsMin), cryptRoundsMax), true
		rest = rest[1:]
	}
	if len(rest) != 2 || rest[1] == "" {
		return "", 0, false, "", errCryptFormat
	}
	return id, rounds, explicit, rest[0], nil
}

// shaCrypt computes the full crypt string of password with salt.
func shaCrypt(id string, password, salt []byte, rounds int, explicit bool) string {
	newHash, order, tail := sha256.New, order256, [3]int{-1, 31, 30}
	if id == "6" {
		newHash, order, tail = sha512.New, order512, [3]int{-1, -1, 63}
	}
	if len(salt) > cryptSaltMax {
		salt = salt[:cryptSaltMax]
	}
	h := newHash()
	size := h.Size()
	sum := func(h hash.Hash) []byte { return h.Sum(nil) }

	// B = H(P S P)
	h.Write(password)
	h.Write(salt)
	h.Write(password)
	b := sum(h)

	// A = H(P S B-repeated-to-len(P) (B or P per bit of len(P)))
	h.Reset()
	h.Write(password)
	h.Write(salt)
	n := len(password)
	for ; n > size; n -= size {
		h.Write(b)
	}
	h.Write(b[:n])
	for n := len(password); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(password)
		}
	}
	a := sum(h)

	// P' and S'
	h.Reset()
	for range len(password) {
		h.Write(password)
	}
	dp := sum(h)
	pp := repeatTo(dp, len(password))
	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(salt)
	}
	ds := sum(h)
	sp := repeatTo(ds, len(salt))

	c := a
	for i := range rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(pp)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(sp)
		}
		if i%7 != 0 {
			h.Write(pp)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(pp)
		}
		c = sum(h)
	}

	var out strings.Builder
	out.WriteString("$" + id + "$")
	if explicit {
		out.WriteString("rounds=" + strconv.Itoa(rounds) + "$")
	}
	out.Write(salt)
	out.WriteByte('$')
	enc := func(b2, b1, b0 byte, chars int) {
		w := uint32(b2)<<16 | uint32(b1)<<8 | uint32(b0)
		for range chars {
			out.WriteByte(cryptAlphabet[w&0x3f])
			w >>= 6
		}
	}
	for _, g := range order {
		enc(c[g[0]], c[g[1]], c[g[2]], 4)
	}
	byteAt := func(i int) byte {
		if i < 0 {
			return 0
		}
		return c[i]
	}
	if id == "6" {
		enc(0, 0, byteAt(tail[2]), 2)
	} else {
		enc(0, byteAt(tail[1]), byteAt(tail[2]), 3)
	}
	return out.String()
}

func repeatTo(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out)+len(d) <= n {
		out = append(out, d...)
	}
	return append(out, d[:n-len(out)]...)
}

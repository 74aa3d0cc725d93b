package signing_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/go-dbsync/dbsync/internal/signing"
	"github.com/go-dbsync/dbsync/peer"
	"github.com/go-dbsync/dbsync/protocol"
)

const nonce = "0123456789abcdef0123456789abcdef"

// TestWireUnchanged pins the signatures of both forms: they travel between
// versions, so the bytes must never change. The peer's value was computed
// by peer.Signed before it used this package; the node's is what
// protocol.Signed computes.
func TestWireUnchanged(t *testing.T) {
	t.Parallel()
	body := []byte("{\"x\":1}\n")
	sum := sha256.Sum256(body)
	pr := &signing.Request{Endpoint: "apply", Query: "a=1&b=2", Sender: "6f9619ff-8b86-d011-b42d-00c04fc964ff",
		Timestamp: 1700000000123, Nonce: nonce, Body: body}
	const peerSig = "14f907b6448a510f5ee565c40f81f991c8e6c034b168e684e8419051d4a8ff08"
	if got := signing.Peer.Sign([]byte("mesh secret"), pr); got != peerSig {
		t.Fatalf("peer signature %s, want %s", got, peerSig)
	}
	hashed := *pr
	hashed.Body, hashed.BodyHash = nil, &sum
	if !signing.Peer.Verify([]byte("mesh secret"), &hashed, peerSig) {
		t.Fatal("the body hash does not stand for the body")
	}
	ps := &peer.Signed{Endpoint: "apply", Query: "a=1&b=2", Peer: uuid.MustParse(pr.Sender), Timestamp: pr.Timestamp, Nonce: nonce, Body: body}
	if got := ps.Sign([]byte("mesh secret")); got != peerSig {
		t.Fatalf("peer.Signed signature %s, want %s", got, peerSig)
	}

	nr := &signing.Request{Endpoint: "push", Query: "a=1", Sender: "42", Timestamp: 1700000000123, Nonce: nonce, Body: []byte("{}")}
	const nodeSig = "36e8709e2e70f179732dcd0ceea1b3778224fa87bd637ec2a7894e196b5733ce"
	if got := signing.Node.Sign([]byte("node secret"), nr); got != nodeSig {
		t.Fatalf("node signature %s, want %s", got, nodeSig)
	}
	ds := &protocol.Signed{Endpoint: "push", Query: "a=1", NodeID: 42, Timestamp: nr.Timestamp, Nonce: nonce, Body: []byte("{}")}
	if got := ds.Sign("node secret"); got != nodeSig {
		t.Fatalf("protocol.Signed signature %s, want %s", got, nodeSig)
	}
	// Form 2 adds the hash of the schema headers; form 1 ignores it.
	hs := sha256.Sum256([]byte("fp\n\n\n"))
	hr := *nr
	hr.Headers = &hs
	if got := signing.Node.Sign([]byte("node secret"), &hr); got != nodeSig {
		t.Fatalf("form 1 with headers: signature %s, want %s", got, nodeSig)
	}
	const headersSig = "5ec0b288b1910a9dc4dc33eb61cd0a52b30749eacfd346557279fc7db8c2ac79"
	if got := signing.NodeHeaders.Sign([]byte("node secret"), &hr); got != headersSig {
		t.Fatalf("form 2 signature %s, want %s", got, headersSig)
	}
	ds.Headers = &protocol.SignedHeaders{Schema: "fp"}
	if got := ds.Sign("node secret"); got != headersSig {
		t.Fatalf("protocol.Signed form 2 signature %s, want %s", got, headersSig)
	}
	if signing.Node.Verify([]byte("node secret"), nr, peerSig) || signing.Peer.Verify([]byte("mesh secret"), pr, "zz") {
		t.Fatal("a wrong signature verified")
	}
}

func TestInWindow(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_700_000_000_000)
	for _, c := range []struct {
		ts   int64
		want bool
	}{
		{now.UnixMilli(), true},
		{now.Add(-time.Minute).UnixMilli(), true},
		{now.Add(time.Minute).UnixMilli(), true},
		{now.Add(-time.Minute - time.Millisecond).UnixMilli(), false},
		{now.Add(time.Minute + time.Millisecond).UnixMilli(), false},
	} {
		if got := signing.InWindow(now, c.ts, time.Minute); got != c.want {
			t.Errorf("InWindow(%d): %v, want %v", c.ts-now.UnixMilli(), got, c.want)
		}
	}
}

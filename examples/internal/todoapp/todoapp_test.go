package todoapp_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-dbsync/dbsync/examples/internal/todoapp"
)

// TestProtocolDocFingerprint checks the fingerprint example of
// docs/protocol.md: the lines it shows hash, by the documented rule, to the
// fingerprint it shows, which is the to-do example's; and the announced
// schema it shows is the to-do example's.
func TestProtocolDocFingerprint(t *testing.T) {
	const lines = "table list_members 2 id\n" +
		"  id uuid\n" +
		"  list_id uuid\n" +
		"  user_id string\n" +
		"table lists 2 id\n" +
		"  id uuid\n" +
		"  name string\n" +
		"  owner_id string\n" +
		"table todos 2 id\n" +
		"  done bool\n" +
		"  id uuid\n" +
		"  list_id uuid\n" +
		"  title string\n" +
		"  updated time\n"
	const fingerprint = "8d71fdf4840f66517c4aeb1c10d78430"
	sum := sha256.Sum256([]byte(lines))
	if got := hex.EncodeToString(sum[:16]); got != fingerprint {
		t.Errorf("the documented rule gives %s, the test expects %s", got, fingerprint)
	}
	db, err := todoapp.Open(filepath.Join(t.TempDir(), "todo.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg, err := todoapp.Setup(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	if got := reg.Fingerprint(); got != fingerprint {
		t.Errorf("Registry.Fingerprint = %s, want %s", got, fingerprint)
	}
	const announced = "1;list_members:u:id=uuid,list_id=uuid,user_id=string;lists:u:id=uuid,name=string,owner_id=string;todos:u:id=uuid,done=bool,list_id=uuid,title=string,updated=time"
	if got := reg.NodeSchema().String(); got != announced {
		t.Errorf("the announced schema is %s, want %s", got, announced)
	}
	doc, err := os.ReadFile("../../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"```\n" + lines + "```", fingerprint, "```\n" + announced + "\n```"} {
		if !strings.Contains(string(doc), v) {
			t.Errorf("docs/protocol.md does not show %q", v)
		}
	}
}

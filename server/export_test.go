package server

import (
	"context"
	"time"

	"github.com/go-dbsync/dbsync"
	"github.com/go-dbsync/dbsync/protocol"
)

// PullUnshared is Pull without shared answers: the node's own answer,
// computed for it alone (pull_share_test.go compares the two).
func (s *Server) PullUnshared(ctx context.Context, node int64, req *protocol.PullRequest, emit Emit) error {
	return s.pull(ctx, node, req, emit, &dbsync.Event{}, false)
}

// SetMaxSharedBytes sets the bound of a shared pull answer.
func (s *Server) SetMaxSharedBytes(n int) { s.shares().maxBytes = n }

// SetLineBudget sets the bound of one answer line's rows, in bytes.
func (s *Server) SetLineBudget(n int) { s.lineBudget = n }

// SetRowsHeld has f told the size in bytes of each row an answer reads,
// and minus the size of rows it read and let go without sending them.
func (s *Server) SetRowsHeld(f func(bytes int)) { s.rowsHeld = f }

// SetRepairNoting has f called by Repair before it records the version
// the node is sent (noteRepaired).
func (s *Server) SetRepairNoting(f func()) { s.repairNoting = f }

// SetPullSealed has f called by a pull after it sealed the direct writes,
// before it reads its snapshot.
func (s *Server) SetPullSealed(f func()) { s.pullSealed = f }

// SetPushFailed has f called by a push whose transaction failed, before
// it decides whether its refusal is stale (directMeanwhile).
func (s *Server) SetPushFailed(f func()) { s.pushFailed = f }

// SetCloseWait sets how long Close waits for the database to record the
// held versions not written yet.
func (s *Server) SetCloseWait(d time.Duration) { s.closeWait = d }

// SetChunksSweeping has f called by the sweep of staged chunks in its
// transaction, before it deletes anything.
func (s *Server) SetChunksSweeping(f func()) { s.chunksSweeping = f }

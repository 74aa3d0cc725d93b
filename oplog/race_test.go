//go:build race

package oplog_test

func init() { raceEnabled = true }

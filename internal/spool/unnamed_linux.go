//go:build linux && (amd64 || arm64 || 386 || arm || riscv64 || loong64 || s390x || ppc64 || ppc64le)

package spool

import (
	"os"
	"syscall"
)

// oTmpfile is Linux's O_TMPFILE (__O_TMPFILE | O_DIRECTORY; __O_TMPFILE
// has this value on the architectures this file is built for).
const oTmpfile = 0x400000 | syscall.O_DIRECTORY

// createUnnamed opens a file without a name in dir (O_TMPFILE), or returns
// nil where that fails (a file system without support, a kernel before
// 3.11, a dir that is missing): Create then makes a named one, whose error
// says what is wrong with dir.
func createUnnamed(dir string) *os.File {
	f, err := os.OpenFile(dir, os.O_RDWR|oTmpfile, 0o600)
	if err != nil {
		return nil
	}
	return f
}

package dialect

import (
	"math"
)

// SQLiteReads returns the float SQLite reads from the decimal literal lit
// (as bun writes a float: an optional sign, digits, an optional fraction
// and exponent), computed as SQLite's sqlite3AtoF does in the SQLite the
// modernc driver compiles: the significand's digits as an integer, then
// scaled by powers of ten in double-double arithmetic. ok is false for
// anything else. SQLite's reading is not correctly rounded at large
// exponents (1e-300 reads as 9.999999999999999e-301): a writer compares
// SQLiteReads with the value it means, and writes AppendExactReal where
// they differ. TestSQLiteReads checks it against the driver's own
// reading.
func SQLiteReads(lit []byte) (v float64, ok bool) {
	const largest = math.MaxUint64
	i, n := 0, len(lit)
	neg := false
	if i < n && (lit[i] == '-' || lit[i] == '+') {
		neg = lit[i] == '-'
		i++
	}
	var s uint64
	d, digits := 0, 0
	for i < n && isDigit(lit[i]) {
		s = s*10 + uint64(lit[i]-'0')
		i++
		digits++
		if s >= (largest-9)/10 {
			for i < n && isDigit(lit[i]) {
				i++
				d++
			}
		}
	}
	if i < n && lit[i] == '.' {
		i++
		for i < n && isDigit(lit[i]) {
			if s < (largest-9)/10 {
				s = s*10 + uint64(lit[i]-'0')
				d--
				digits++
			}
			i++
		}
	}
	e, esign := 0, 1
	if i < n && (lit[i] == 'e' || lit[i] == 'E') {
		i++
		if i < n && (lit[i] == '-' || lit[i] == '+') {
			if lit[i] == '-' {
				esign = -1
			}
			i++
		}
		start := i
		for i < n && isDigit(lit[i]) {
			if e < 10000 {
				e = e*10 + int(lit[i]-'0')
			} else {
				e = 10000
			}
			i++
		}
		if i == start {
			return 0, false
		}
	}
	if i != n || digits == 0 {
		return 0, false
	}
	if s == 0 {
		if neg {
			return math.Copysign(0, -1), true
		}
		return 0, true
	}
	e = e*esign + d
	for e > 0 && s < (largest-0x7ff)/10 {
		s *= 10
		e--
	}
	for e < 0 && s%10 == 0 {
		s /= 10
		e++
	}
	var rr [2]float64
	rr[0] = float64(s)
	if rr[0] <= 1.844674407370955e+19 {
		s2 := uint64(rr[0])
		if s >= s2 {
			rr[1] = float64(s - s2)
		} else {
			rr[1] = -float64(s2 - s)
		}
	}
	if e > 0 {
		for ; e >= 100; e -= 100 {
			dekkerMul2(&rr, 1e+100, -1.5902891109759918e+83)
		}
		for ; e >= 10; e -= 10 {
			dekkerMul2(&rr, 1e+10, 0)
		}
		for ; e >= 1; e-- {
			dekkerMul2(&rr, 10, 0)
		}
	} else {
		for ; e <= -100; e += 100 {
			dekkerMul2(&rr, 1e-100, -1.9991899802602883e-117)
		}
		for ; e <= -10; e += 10 {
			dekkerMul2(&rr, 1e-10, -3.643219731549774e-27)
		}
		for ; e <= -1; e++ {
			dekkerMul2(&rr, 0.1, -5.551115123125783e-18)
		}
	}
	v = rr[0] + rr[1]
	if math.IsNaN(v) {
		v = math.Inf(1)
	}
	if neg {
		v = -v
	}
	return v, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// dekkerMul2 multiplies the double-double x by the double-double (y, yy),
// as SQLite's dekkerMul2 does. Every product is rounded on its own (the
// float64 conversions keep the compiler from fusing a multiply and an
// add), as in the driver's code.
func dekkerMul2(x *[2]float64, y, yy float64) {
	const mask = 0xfffffffffc000000
	hx := math.Float64frombits(math.Float64bits(x[0]) & mask)
	tx := x[0] - hx
	hy := math.Float64frombits(math.Float64bits(y) & mask)
	ty := y - hy
	p := float64(hx * hy)
	q := float64(hx*ty) + float64(tx*hy)
	c := p + q
	cc := p - c + q + float64(tx*ty)
	cc = float64(x[0]*yy) + float64(x[1]*y) + cc
	x[0] = c + cc
	x[1] = c - x[0]
	x[1] += cc
}

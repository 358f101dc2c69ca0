#include "textflag.h"

// Each table entry is added to one of four scalar accumulators, two with
// VADDSS and two with VFMADD231SS against 1.0: on AMD Zen 4/5 the two
// instructions go to different pipes, so four adds issue per cycle where
// plain VADDSS allows two (the FP add ports are the bottleneck of a
// table-lookup scan). Code bytes are pulled out of a 64-bit load through
// AL/AH, which costs ALU slots but keeps the load ports for table reads.

DATA one<>+0(SB)/4, $1.0
GLOBL one<>(SB), RODATA|NOPTR, $4

// PAIR adds the entries for bytes 0 and 1 of AX, in sub-quantizers at byte
// offsets o0 and o1 from R11, to accumulators a0 and a1, then shifts AX.
#define PAIR(o0, o1, a0, a1) \
	MOVBLZX AL, R9 \
	MOVBLZX AH, BX \
	VADDSS o0(R11)(R9*4), a0, a0 \
	VFMADD231SS o1(R11)(BX*4), X15, a1 \
	SHRQ $16, AX

// func scanScalarAVX(table *float32, codes *byte, m int, n int, out *float32)
// Computes the sums of n codes of m bytes, m a multiple of 8, n > 0.
TEXT ·scanScalarAVX(SB), NOSPLIT, $0-40
	MOVQ table+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ m+16(FP), R12
	SHRQ $3, R12
	MOVQ n+24(FP), R8
	MOVQ out+32(FP), DX
	VMOVSS one<>(SB), X15

code:
	VXORPS X0, X0, X0
	VXORPS X1, X1, X1
	VXORPS X2, X2, X2
	VXORPS X3, X3, X3
	MOVQ DI, R11
	MOVQ R12, CX

chunk:
	MOVQ (SI), AX
	PAIR(0, 1024, X0, X1)
	PAIR(2048, 3072, X2, X3)
	PAIR(4096, 5120, X0, X1)
	PAIR(6144, 7168, X2, X3)
	ADDQ $8, SI
	ADDQ $8192, R11
	DECQ CX
	JNZ  chunk

	VADDSS X1, X0, X0
	VADDSS X3, X2, X2
	VADDSS X2, X0, X0
	VMOVSS X0, (DX)
	ADDQ $4, DX
	DECQ R8
	JNZ  code
	RET

// func scan16AVX(table *float32, codes *byte, n int, out *float32)
// Computes the sums of n codes of 16 bytes, n > 0: scanScalarAVX unrolled
// for the common PQ16, with the accumulators loaded rather than zeroed.
TEXT ·scan16AVX(SB), NOSPLIT, $0-32
	MOVQ table+0(FP), DI
	MOVQ codes+8(FP), SI
	MOVQ n+16(FP), R8
	MOVQ out+24(FP), DX
	VMOVSS one<>(SB), X15
	MOVQ DI, R11

code16:
	MOVQ (SI), AX
	MOVBLZX AL, R9
	MOVBLZX AH, BX
	VMOVSS 0(DI)(R9*4), X0
	VMOVSS 1024(DI)(BX*4), X1
	SHRQ $16, AX
	MOVBLZX AL, R9
	MOVBLZX AH, BX
	VMOVSS 2048(DI)(R9*4), X2
	VMOVSS 3072(DI)(BX*4), X3
	SHRQ $16, AX
	PAIR(4096, 5120, X0, X1)
	MOVBLZX AL, R9
	MOVBLZX AH, BX
	VADDSS 6144(DI)(R9*4), X2, X2
	VFMADD231SS 7168(DI)(BX*4), X15, X3
	MOVQ 8(SI), AX
	PAIR(8192, 9216, X0, X1)
	PAIR(10240, 11264, X2, X3)
	PAIR(12288, 13312, X0, X1)
	MOVBLZX AL, R9
	MOVBLZX AH, BX
	VADDSS 14336(DI)(R9*4), X2, X2
	VFMADD231SS 15360(DI)(BX*4), X15, X3
	VADDSS X1, X0, X0
	VADDSS X3, X2, X2
	VADDSS X2, X0, X0
	VMOVSS X0, (DX)
	ADDQ $16, SI
	ADDQ $4, DX
	DECQ R8
	JNZ  code16
	RET

// func firstLEAVX2(d *float32, n int, thr float32) int
// Returns the index of the first d[i] <= thr (NaN never is) among the
// first n, or n; n is a positive multiple of 8.
TEXT ·firstLEAVX2(SB), NOSPLIT, $0-32
	MOVQ d+0(FP), SI
	MOVQ n+8(FP), CX
	VBROADCASTSS thr+16(FP), Y1
	XORQ AX, AX

le8:
	VCMPPS $13, (SI)(AX*4), Y1, Y0 // thr >= d (GE_OS: false on NaN)
	VMOVMSKPS Y0, BX
	TESTL BX, BX
	JNZ  lefound
	ADDQ $8, AX
	CMPQ AX, CX
	JLT  le8
	VZEROUPPER
	MOVQ AX, ret+24(FP)
	RET

lefound:
	TZCNTL BX, BX
	ADDQ BX, AX
	VZEROUPPER
	MOVQ AX, ret+24(FP)
	RET

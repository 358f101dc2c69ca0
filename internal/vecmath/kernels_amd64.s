#include "textflag.h"

// func dotAVX2(a, b *float32, n int) float32
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

dot32:
	CMPQ CX, $32
	JL   dot8
	VMOVUPS (SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VFMADD231PS (DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  dot32

dot8:
	CMPQ CX, $8
	JL   dotreduce
	VMOVUPS (SI), Y4
	VFMADD231PS (DI), Y4, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  dot8

dotreduce:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0

dot1:
	TESTQ CX, CX
	JE    dotdone
	VMOVSS (SI), X1
	VFMADD231SS (DI), X1, X0
	ADDQ $4, SI
	ADDQ $4, DI
	DECQ CX
	JMP  dot1

dotdone:
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// func l2sqAVX2(a, b *float32, n int) float32
TEXT ·l2sqAVX2(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3

l2_32:
	CMPQ CX, $32
	JL   l2_8
	VMOVUPS (SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VSUBPS (DI), Y4, Y4
	VSUBPS 32(DI), Y5, Y5
	VSUBPS 64(DI), Y6, Y6
	VSUBPS 96(DI), Y7, Y7
	VFMADD231PS Y4, Y4, Y0
	VFMADD231PS Y5, Y5, Y1
	VFMADD231PS Y6, Y6, Y2
	VFMADD231PS Y7, Y7, Y3
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP  l2_32

l2_8:
	CMPQ CX, $8
	JL   l2reduce
	VMOVUPS (SI), Y4
	VSUBPS (DI), Y4, Y4
	VFMADD231PS Y4, Y4, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP  l2_8

l2reduce:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0

l2_1:
	TESTQ CX, CX
	JE    l2done
	VMOVSS (SI), X1
	VSUBSS (DI), X1, X1
	VFMADD231SS X1, X1, X0
	ADDQ $4, SI
	ADDQ $4, DI
	DECQ CX
	JMP  l2_1

l2done:
	VMOVSS X0, ret+24(FP)
	VZEROUPPER
	RET

// TILE4x16 accumulates a 4x16 tile of x*p^T into Y0..Y7 (row r in Y(2r),
// Y(2r+1)). SI, R9, R10, R11 point at the four x rows, DI at the panel (it
// advances past it), CX holds d (clobbered), AX is clobbered.
#define TILE4x16(loop) \
	VXORPS Y0, Y0, Y0 \
	VXORPS Y1, Y1, Y1 \
	VXORPS Y2, Y2, Y2 \
	VXORPS Y3, Y3, Y3 \
	VXORPS Y4, Y4, Y4 \
	VXORPS Y5, Y5, Y5 \
	VXORPS Y6, Y6, Y6 \
	VXORPS Y7, Y7, Y7 \
	XORQ AX, AX \
loop: \
	VMOVUPS (DI), Y8 \
	VMOVUPS 32(DI), Y9 \
	VBROADCASTSS (SI)(AX*1), Y10 \
	VFMADD231PS Y8, Y10, Y0 \
	VFMADD231PS Y9, Y10, Y1 \
	VBROADCASTSS (R9)(AX*1), Y11 \
	VFMADD231PS Y8, Y11, Y2 \
	VFMADD231PS Y9, Y11, Y3 \
	VBROADCASTSS (R10)(AX*1), Y12 \
	VFMADD231PS Y8, Y12, Y4 \
	VFMADD231PS Y9, Y12, Y5 \
	VBROADCASTSS (R11)(AX*1), Y13 \
	VFMADD231PS Y8, Y13, Y6 \
	VFMADD231PS Y9, Y13, Y7 \
	ADDQ $64, DI \
	ADDQ $4, AX \
	DECQ CX \
	JNZ loop

// func gemm4x16AVX2(x *float32, ldx int, p *float32, d int, out *float32, ldo int)
TEXT ·gemm4x16AVX2(SB), NOSPLIT, $0-48
	MOVQ x+0(FP), SI
	MOVQ ldx+8(FP), R8
	SHLQ $2, R8
	MOVQ p+16(FP), DI
	MOVQ d+24(FP), CX
	MOVQ out+32(FP), DX
	MOVQ ldo+40(FP), BX
	SHLQ $2, BX
	LEAQ (SI)(R8*1), R9
	LEAQ (R9)(R8*1), R10
	LEAQ (R10)(R8*1), R11
	TILE4x16(gemmloop)
	VMOVUPS Y0, (DX)
	VMOVUPS Y1, 32(DX)
	ADDQ BX, DX
	VMOVUPS Y2, (DX)
	VMOVUPS Y3, 32(DX)
	ADDQ BX, DX
	VMOVUPS Y4, (DX)
	VMOVUPS Y5, 32(DX)
	ADDQ BX, DX
	VMOVUPS Y6, (DX)
	VMOVUPS Y7, 32(DX)
	VZEROUPPER
	RET

DATA sixteen<>+0(SB)/4, $16
DATA sixteen<>+4(SB)/4, $16
DATA sixteen<>+8(SB)/4, $16
DATA sixteen<>+12(SB)/4, $16
DATA sixteen<>+16(SB)/4, $16
DATA sixteen<>+20(SB)/4, $16
DATA sixteen<>+24(SB)/4, $16
DATA sixteen<>+28(SB)/4, $16
GLOBL sixteen<>(SB), RODATA|NOPTR, $32

DATA lanes<>+0(SB)/4, $0
DATA lanes<>+4(SB)/4, $1
DATA lanes<>+8(SB)/4, $2
DATA lanes<>+12(SB)/4, $3
DATA lanes<>+16(SB)/4, $4
DATA lanes<>+20(SB)/4, $5
DATA lanes<>+24(SB)/4, $6
DATA lanes<>+28(SB)/4, $7
DATA lanes<>+32(SB)/4, $8
DATA lanes<>+36(SB)/4, $9
DATA lanes<>+40(SB)/4, $10
DATA lanes<>+44(SB)/4, $11
DATA lanes<>+48(SB)/4, $12
DATA lanes<>+52(SB)/4, $13
DATA lanes<>+56(SB)/4, $14
DATA lanes<>+60(SB)/4, $15
GLOBL lanes<>(SB), RODATA|NOPTR, $64

// UPDATEMIN folds the distances in dist into the running minimum at off(DX)
// (values) and off(R8) (indices); cur holds the column indices of dist. The
// strict less-than keeps the earliest column on ties.
#define UPDATEMIN(dist, off, cur) \
	VMOVUPS off(DX), Y10 \
	VCMPPS $1, Y10, dist, Y11 \
	VBLENDVPS Y11, dist, Y10, Y10 \
	VMOVUPS Y10, off(DX) \
	VMOVDQU off(R8), Y12 \
	VBLENDVPS Y11, cur, Y12, Y12 \
	VMOVDQU Y12, off(R8)

// func argmin4x16AVX2(x *float32, ldx int, p *float32, d int, npanels int, norms *float32, idx0 int32, minv *float32, mini *int32)
TEXT ·argmin4x16AVX2(SB), NOSPLIT, $0-72
	MOVQ x+0(FP), SI
	MOVQ ldx+8(FP), R8
	SHLQ $2, R8
	LEAQ (SI)(R8*1), R9
	LEAQ (R9)(R8*1), R10
	LEAQ (R10)(R8*1), R11
	MOVQ p+16(FP), DI
	MOVQ d+24(FP), R13
	MOVQ npanels+32(FP), R12
	MOVQ norms+40(FP), BX
	MOVL idx0+48(FP), AX
	VMOVD AX, X13
	VPBROADCASTD X13, Y13
	VPADDD lanes<>+0(SB), Y13, Y14
	VPADDD lanes<>+32(SB), Y13, Y15
	MOVQ minv+56(FP), DX
	MOVQ mini+64(FP), R8

panelloop:
	MOVQ R13, CX
	TILE4x16(argkloop)
	VMOVUPS (BX), Y8
	VMOVUPS 32(BX), Y9
	VADDPS Y8, Y0, Y0
	VADDPS Y9, Y1, Y1
	VADDPS Y8, Y2, Y2
	VADDPS Y9, Y3, Y3
	VADDPS Y8, Y4, Y4
	VADDPS Y9, Y5, Y5
	VADDPS Y8, Y6, Y6
	VADDPS Y9, Y7, Y7
	UPDATEMIN(Y0, 0, Y14)
	UPDATEMIN(Y1, 32, Y15)
	UPDATEMIN(Y2, 64, Y14)
	UPDATEMIN(Y3, 96, Y15)
	UPDATEMIN(Y4, 128, Y14)
	UPDATEMIN(Y5, 160, Y15)
	UPDATEMIN(Y6, 192, Y14)
	UPDATEMIN(Y7, 224, Y15)
	VPADDD sixteen<>(SB), Y14, Y14
	VPADDD sixteen<>(SB), Y15, Y15
	ADDQ $64, BX
	DECQ R12
	JNZ  panelloop
	VZEROUPPER
	RET

DATA lanes16<>+0(SB)/4, $16
GLOBL lanes16<>(SB), RODATA|NOPTR, $4

// UPD512 folds row r's distances acc into its running minimum mv (values)
// and mi (column indices, Z10 holding those of the current panel).
#define UPD512(acc, mv, mi) \
	VCMPPS $1, mv, acc, K1 \
	VMOVAPS acc, K1, mv \
	VMOVDQA32 Z10, K1, mi

DATA maxint<>+0(SB)/4, $0x7fffffff
GLOBL maxint<>(SB), RODATA|NOPTR, $4

// HMIN reduces row state mv/mi to its smallest value and, among the lanes
// holding it, the smallest column index, stored as the first float of
// off(DX) and the first int32 of off(R8).
#define HMIN(mv, mi, off) \
	VSHUFF32X4 $0x4E, mv, mv, Z12 \
	VMINPS Z12, mv, Z12 \
	VSHUFF32X4 $0xB1, Z12, Z12, Z13 \
	VMINPS Z13, Z12, Z12 \
	VSHUFPS $0x4E, Z12, Z12, Z13 \
	VMINPS Z13, Z12, Z12 \
	VSHUFPS $0xB1, Z12, Z12, Z13 \
	VMINPS Z13, Z12, Z12 \
	VCMPPS $0, Z12, mv, K1 \
	VMOVDQA32 Z14, Z13 \
	VMOVDQA32 mi, K1, Z13 \
	VSHUFI32X4 $0x4E, Z13, Z13, Z15 \
	VPMINSD Z15, Z13, Z13 \
	VSHUFI32X4 $0xB1, Z13, Z13, Z15 \
	VPMINSD Z15, Z13, Z13 \
	VPSHUFD $0x4E, Z13, Z15 \
	VPMINSD Z15, Z13, Z13 \
	VPSHUFD $0xB1, Z13, Z15 \
	VPMINSD Z15, Z13, Z13 \
	VMOVSS X12, off(DX) \
	VMOVD X13, off(R8)

// func argmin8x16AVX512(xp *float32, p *float32, d int, npanels int, norms *float32, idx0 int32, minv *float32, mini *int32, final int)
// xp holds 8 x rows interleaved ([d][8]), so one pointer and constant
// offsets reach all of them. The running minima of the 8 rows x 16 lanes
// stay in Z16..Z31 across all panels. When final is not 0 the lanes are
// reduced before returning and only the first element of each row's state
// is meaningful.
TEXT ·argmin8x16AVX512(SB), NOSPLIT, $0-72
	MOVQ xp+0(FP), R9
	MOVQ p+8(FP), DI
	MOVQ d+16(FP), R13
	MOVQ npanels+24(FP), R12
	MOVQ norms+32(FP), BX
	MOVL idx0+40(FP), AX
	VMOVD AX, X10
	VPBROADCASTD X10, Z10
	VPADDD lanes<>(SB), Z10, Z10
	VPBROADCASTD lanes16<>(SB), Z11
	MOVQ minv+48(FP), DX
	MOVQ mini+56(FP), R8
	VMOVUPS 0(DX), Z16
	VMOVUPS 64(DX), Z17
	VMOVUPS 128(DX), Z18
	VMOVUPS 192(DX), Z19
	VMOVUPS 256(DX), Z20
	VMOVUPS 320(DX), Z21
	VMOVUPS 384(DX), Z22
	VMOVUPS 448(DX), Z23
	VMOVDQU32 0(R8), Z24
	VMOVDQU32 64(R8), Z25
	VMOVDQU32 128(R8), Z26
	VMOVDQU32 192(R8), Z27
	VMOVDQU32 256(R8), Z28
	VMOVDQU32 320(R8), Z29
	VMOVDQU32 384(R8), Z30
	VMOVDQU32 448(R8), Z31

panel512:
	MOVQ R9, SI
	MOVQ R13, CX
	// Start from ||y||^2; the panel holds -2*y, so the products finish
	// ||y||^2 - 2<x,y>.
	VMOVUPS (BX), Z0
	VMOVAPS Z0, Z1
	VMOVAPS Z0, Z2
	VMOVAPS Z0, Z3
	VMOVAPS Z0, Z4
	VMOVAPS Z0, Z5
	VMOVAPS Z0, Z6
	VMOVAPS Z0, Z7

k512:
	VMOVUPS (DI), Z8
	VFMADD231PS.BCST 0(SI), Z8, Z0
	VFMADD231PS.BCST 4(SI), Z8, Z1
	VFMADD231PS.BCST 8(SI), Z8, Z2
	VFMADD231PS.BCST 12(SI), Z8, Z3
	VFMADD231PS.BCST 16(SI), Z8, Z4
	VFMADD231PS.BCST 20(SI), Z8, Z5
	VFMADD231PS.BCST 24(SI), Z8, Z6
	VFMADD231PS.BCST 28(SI), Z8, Z7
	ADDQ $64, DI
	ADDQ $32, SI
	DECQ CX
	JNZ  k512

	UPD512(Z0, Z16, Z24)
	UPD512(Z1, Z17, Z25)
	UPD512(Z2, Z18, Z26)
	UPD512(Z3, Z19, Z27)
	UPD512(Z4, Z20, Z28)
	UPD512(Z5, Z21, Z29)
	UPD512(Z6, Z22, Z30)
	UPD512(Z7, Z23, Z31)
	VPADDD Z11, Z10, Z10
	ADDQ $64, BX
	DECQ R12
	JNZ  panel512

	MOVQ final+64(FP), AX
	TESTQ AX, AX
	JEQ  keep512
	VPBROADCASTD maxint<>(SB), Z14
	HMIN(Z16, Z24, 0)
	HMIN(Z17, Z25, 64)
	HMIN(Z18, Z26, 128)
	HMIN(Z19, Z27, 192)
	HMIN(Z20, Z28, 256)
	HMIN(Z21, Z29, 320)
	HMIN(Z22, Z30, 384)
	HMIN(Z23, Z31, 448)
	VZEROUPPER
	RET

keep512:
	VMOVUPS Z16, 0(DX)
	VMOVUPS Z17, 64(DX)
	VMOVUPS Z18, 128(DX)
	VMOVUPS Z19, 192(DX)
	VMOVUPS Z20, 256(DX)
	VMOVUPS Z21, 320(DX)
	VMOVUPS Z22, 384(DX)
	VMOVUPS Z23, 448(DX)
	VMOVDQU32 Z24, 0(R8)
	VMOVDQU32 Z25, 64(R8)
	VMOVDQU32 Z26, 128(R8)
	VMOVDQU32 Z27, 192(R8)
	VMOVDQU32 Z28, 256(R8)
	VMOVDQU32 Z29, 320(R8)
	VMOVDQU32 Z30, 384(R8)
	VMOVDQU32 Z31, 448(R8)
	VZEROUPPER
	RET

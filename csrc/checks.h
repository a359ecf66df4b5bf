// Argument checks shared by the entry points: every buffer comes with its
// length, and sizes derived from counts are computed without overflow.
#ifndef DF_CHECKS_H
#define DF_CHECKS_H

#include <stddef.h>
#include <stdint.h>

// 1 if a * b fits in size_t and is at most cap.
static inline int df_fits(size_t a, size_t b, size_t cap)
{
	size_t r;

	return !__builtin_mul_overflow(a, b, &r) && r <= cap;
}

// Bytes of an LSB-first bitmap of nbits bits.
static inline size_t df_bitmap_bytes(uint64_t nbits)
{
	return (size_t)(nbits / 8 + ((nbits & 7) != 0));
}

#endif // DF_CHECKS_H

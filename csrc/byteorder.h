// Explicit-width, explicit-byte-order loads from dump memory. Never cast a
// dump buffer to a host type: the dumped kernel's byte order and word size
// are data, not properties of the machine running dumpfilter.
#ifndef DF_BYTEORDER_H
#define DF_BYTEORDER_H

#include <stdint.h>

static inline uint16_t df_load16(const uint8_t *p, int big_endian)
{
	return big_endian ? (uint16_t)((uint16_t)p[0] << 8 | p[1])
			  : (uint16_t)((uint16_t)p[1] << 8 | p[0]);
}

static inline uint32_t df_load32(const uint8_t *p, int big_endian)
{
	if (big_endian)
		return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
		       (uint32_t)p[2] << 8 | (uint32_t)p[3];
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[1] << 8 | (uint32_t)p[0];
}

static inline uint64_t df_load64(const uint8_t *p, int big_endian)
{
	uint64_t lo = df_load32(p + (big_endian ? 4 : 0), big_endian);
	uint64_t hi = df_load32(p + (big_endian ? 0 : 4), big_endian);
	return hi << 32 | lo;
}

static inline void df_store32le(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static inline void df_store64le(uint8_t *p, uint64_t v)
{
	df_store32le(p, (uint32_t)v);
	df_store32le(p + 4, (uint32_t)(v >> 32));
}

#endif // DF_BYTEORDER_H

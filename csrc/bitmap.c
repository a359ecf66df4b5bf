// LSB-first bitmaps: bit n lives in byte n >> 3 at position n & 7, the
// layout of both kdump-compressed bitmaps.
#include <string.h>

#include "checks.h"
#include "dumpfilter.h"

df_status df_bitmap_count(const uint8_t *bitmap, size_t bitmap_len, uint64_t nbits,
			  uint64_t *count_ret)
{
	uint64_t n = 0, i, whole = nbits >> 3;

	if (bitmap_len < df_bitmap_bytes(nbits))
		return DF_ERR_INVALID;
	for (i = 0; i < whole; i++)
		n += (uint64_t)__builtin_popcount(bitmap[i]);
	if (nbits & 7)
		n += (uint64_t)__builtin_popcount(bitmap[whole] &
						  ((1u << (nbits & 7)) - 1));
	*count_ret = n;
	return DF_OK;
}

df_status df_bitmap_set_range(uint8_t *bitmap, size_t bitmap_len, uint64_t start,
			      uint64_t end)
{
	if (start > end || bitmap_len < df_bitmap_bytes(end))
		return DF_ERR_INVALID;
	while (start < end && (start & 7)) {
		bitmap[start >> 3] |= (uint8_t)(1u << (start & 7));
		start++;
	}
	if (end - start >= 8 && start < end) {
		uint64_t nbytes = (end - start) >> 3;
		memset(bitmap + (start >> 3), 0xff, nbytes);
		start += nbytes << 3;
	}
	while (start < end) {
		bitmap[start >> 3] |= (uint8_t)(1u << (start & 7));
		start++;
	}
	return DF_OK;
}

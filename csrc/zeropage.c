// All-zero page detection.
#include <string.h>

#include "checks.h"
#include "dumpfilter.h"

static int df_is_zero(const uint8_t *p, uint32_t len)
{
	// Compare 64-byte blocks with OR accumulation; memcpy keeps the loads
	// free of alignment assumptions and compiles to plain moves.
	uint64_t acc = 0, w[8];
	uint32_t i = 0;

	for (; i + 64 <= len; i += 64) {
		memcpy(w, p + i, 64);
		acc |= w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7];
		if (acc)
			return 0;
	}
	for (; i < len; i++)
		if (p[i])
			return 0;
	return 1;
}

df_status df_find_zero_pages(const uint8_t *data, size_t data_len, size_t npages,
			     uint32_t page_size, const uint8_t *mask, size_t mask_len,
			     uint8_t *zero_ret, size_t zero_len, uint64_t *count_ret)
{
	uint64_t count = 0;
	size_t i;

	if (page_size == 0 || !df_fits(npages, page_size, data_len) ||
	    (mask && mask_len < df_bitmap_bytes(npages)) || zero_len < df_bitmap_bytes(npages))
		return DF_ERR_INVALID;
	memset(zero_ret, 0, (npages + 7) / 8);
	for (i = 0; i < npages; i++) {
		if (mask && !(mask[i >> 3] & (1u << (i & 7))))
			continue;
		if (df_is_zero(data + i * (size_t)page_size, page_size)) {
			zero_ret[i >> 3] |= (uint8_t)(1u << (i & 7));
			count++;
		}
	}
	*count_ret = count;
	return DF_OK;
}

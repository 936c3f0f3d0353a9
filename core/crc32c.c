/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: CRC-32C, bit by bit.  It only checks a 4 KiB header when a
 * log is loaded or its header rewritten (a leg fails or comes back), so
 * a table or instructions would buy nothing worth their code.
 */
#include "crc32c.h"

#define CRC32C_POLY 0x82f63b78u  /* 0x1edc6f41 reflected */

uint32_t
ndm_crc32c (const void *buf, size_t len)
{
  const unsigned char *p = buf;
  uint32_t crc = 0xffffffffu;
  size_t i;
  int bit;

  for (i = 0; i < len; i++) {
    crc ^= p[i];
    for (bit = 0; bit < 8; bit++)
      crc = (crc >> 1) ^ (CRC32C_POLY & -(crc & 1));
  }
  return crc ^ 0xffffffffu;
}

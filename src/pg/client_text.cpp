#include "client_text.h"

extern "C" {
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
}

namespace billing::pg {

namespace {
bool ascii(const char* s) {
  for (; *s != '\0'; ++s)
    if (static_cast<unsigned char>(*s) >= 0x80) return false;
  return true;
}

// The length of the UTF-8 character at p, or 0 when it is cut short (a
// message cut at a byte count may end inside one).
int whole_utf8_char(const unsigned char* p) {
  const int len = pg_utf_mblen(p);
  for (int i = 1; i < len; ++i)
    if ((p[i] & 0xC0) != 0x80) return 0;
  return len;
}
}  // namespace

const char* client_safe(const char* msg) {
  const int client = pg_get_client_encoding();
  const int server = GetDatabaseEncoding();
  if (client == server || client == PG_SQL_ASCII || server == PG_SQL_ASCII || ascii(msg)) return msg;
  StringInfoData out;
  initStringInfo(&out);
  const bool utf8 = server == PG_UTF8;
  for (auto* p = reinterpret_cast<const unsigned char*>(msg); *p != '\0';) {
    if (*p < 0x80) {
      appendStringInfoChar(&out, static_cast<char>(*p++));
      continue;
    }
    const int len = utf8 ? whole_utf8_char(p) : 0;
    if (len == 0) {
      appendStringInfo(&out, "\\x%02X", *p++);
      continue;
    }
    const pg_wchar c = utf8_to_unicode(p);
    appendStringInfo(&out, c > 0xFFFF ? "\\U%08X" : "\\u%04X", static_cast<unsigned>(c));
    p += len;
  }
  return out.data;
}

}  // namespace billing::pg

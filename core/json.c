/* SPDX-License-Identifier: BSD-3-Clause */
/* nbd-dm: JSON payloads through json-glib (see json.h). */
#include <string.h>

#include "json.h"

JsonBuilder *
ndm_json_payload_new (void)
{
  JsonBuilder *b = json_builder_new ();

  json_builder_begin_object (b);
  ndm_json_member_int (b, "version", NDM_JSON_VERSION);
  return b;
}

void
ndm_json_payload_end (JsonBuilder *b, GString *out)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  g_autoptr (JsonNode) root = NULL;
  g_autofree char *text = NULL;

  json_builder_end_object (b);
  root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  /* Not pretty: the protocol's payload is one line. */
  text = json_generator_to_data (gen, NULL);
  g_string_append (out, text);
  g_string_append_c (out, '\n');
}

void
ndm_json_add_string (JsonBuilder *b, const char *str)
{
  g_autofree char *valid = NULL;

  if (str == NULL) {
    json_builder_add_null_value (b);
    return;
  }
  /* json-glib copies a string's bytes as they are: invalid UTF-8 (a
   * name= or a server's message in Latin-1) would make invalid JSON.
   */
  if (g_utf8_validate (str, -1, NULL)) {
    json_builder_add_string_value (b, str);
    return;
  }
  valid = g_utf8_make_valid (str, -1);
  json_builder_add_string_value (b, valid);
}

void
ndm_json_add_words (JsonBuilder *b, const char *line)
{
  g_auto (GStrv) words = g_strsplit_set (line, " \t\n", -1);
  char **w;

  json_builder_begin_array (b);
  for (w = words; *w != NULL; w++)
    if (**w != '\0')
      ndm_json_add_string (b, *w);
  json_builder_end_array (b);
}

void
ndm_json_member_string (JsonBuilder *b, const char *name, const char *str)
{
  json_builder_set_member_name (b, name);
  ndm_json_add_string (b, str);
}

void
ndm_json_member_uint (JsonBuilder *b, const char *name, uint64_t v)
{
  json_builder_set_member_name (b, name);
  /* json-glib's integers are signed 64 bits: no counter here gets near. */
  json_builder_add_int_value (b, v > INT64_MAX ? INT64_MAX : (int64_t) v);
}

void
ndm_json_member_int (JsonBuilder *b, const char *name, int64_t v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_int_value (b, v);
}

void
ndm_json_member_bool (JsonBuilder *b, const char *name, bool v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_boolean_value (b, v);
}

void
ndm_json_member_double (JsonBuilder *b, const char *name, double v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_double_value (b, v);
}

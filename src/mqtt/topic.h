/*
 * Topic names, topic filters and the subscription tree.
 *
 * The tree has one node per filter level; a node's children are kept in a
 * small open-addressing hash table, because one level ("devices/") can
 * have as many children as there are devices. Matching a topic walks the
 * literal child, the "+" child and the "#" child at each level, so its cost
 * depends on the topic's depth and the matching subscriptions, not on how
 * many subscriptions exist. Loop thread only.
 */
#ifndef DROVER_MQTT_TOPIC_H
#define DROVER_MQTT_TOPIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A topic name: non-empty, no wildcards ([MQTT-4.7.3-1], [MQTT-3.3.2-2]),
 * at most max_len bytes and max_depth levels. UTF-8 is checked by the codec. */
bool topic_name_valid(const char *t, size_t len, size_t max_len, size_t max_depth);

/* A topic filter: non-empty; "#" only as the whole last level
 * ([MQTT-4.7.1-2]); "+" only as a whole level ([MQTT-4.7.1-3]). */
bool topic_filter_valid(const char *f, size_t len, size_t max_len, size_t max_depth);

/* Whether topic matches filter, with the rule that a wildcard in the first
 * level does not match a topic starting with '$' ([MQTT-4.7.2-1]). */
bool topic_matches(const char *filter, size_t flen, const char *topic, size_t tlen);

typedef struct topic_tree topic_tree_t;

int topic_tree_new(topic_tree_t **out);
void topic_tree_free(topic_tree_t *t);

/* Adds (owner, filter) with an options byte; if owner already has this
 * filter its options are replaced and 1 is returned, else 0. -ENOMEM. */
int topic_tree_add(topic_tree_t *t, const char *filter, size_t len, void *owner, uint8_t opts);

/* Removes (owner, filter). 0 if removed, -ENOENT if it was not there. */
int topic_tree_remove(topic_tree_t *t, const char *filter, size_t len, void *owner);

/* Calls fn for every (owner, opts) whose filter matches topic. An owner
 * with several matching filters is reported once per filter. */
void topic_tree_match(const topic_tree_t *t, const char *topic, size_t len,
                      void (*fn)(void *ctx, void *owner, uint8_t opts), void *ctx);

/* Number of (owner, filter) entries. */
size_t topic_tree_count(const topic_tree_t *t);

#endif

#!/bin/sh
# Stand-in for a chat API: one line per message.
line="[$ATTUNE_PARAM_CHANNEL] $ATTUNE_PARAM_MESSAGE"
if [ -n "${ATTUNE_DEMO_CHAT:-}" ]; then
  printf '%s\n' "$line" >> "$ATTUNE_DEMO_CHAT"
fi
printf '%s\n' "$line"

#!/bin/sh
set -eu
echo "rolling back deployment $ATTUNE_PARAM_APP_NAME to its previous revision"
echo "deployment.apps/$ATTUNE_PARAM_APP_NAME rolled back"

#!/bin/sh
# Seeds the fuzz corpora with the repository's YAML: examples, manifests, and the compiler's
# test data when there is any. Run from anywhere; corpora live in fuzz/corpus/<target>/.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
for target in front yaml_diff scalar_map; do
    dir="$here/corpus/$target"
    mkdir -p "$dir"
    find "$root/examples" "$root/manifests" "$root/compiler/test_data" "$root/compiler/tests" \
        -type f \( -name '*.yaml' -o -name '*.yml' \) 2>/dev/null |
        while read -r f; do
            cp "$f" "$dir/$(printf '%s' "$f" | sed "s|$root/||; s|/|_|g")"
        done
done
echo "seeded $(ls "$here/corpus/front" | wc -l) files per target into $here/corpus/"

#!/bin/sh
# Seeds the fuzz corpora from the repository: examples, manifests, and the compiler's test
# data. Run from anywhere; corpora live in fuzz/corpus/<target>/. The `admission` corpus
# needs python3 with PyYAML (seed_admission.py).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")

yaml_files() {
    find "$root/examples" "$root/manifests" "$root/compiler/test_data" "$root/compiler/tests" \
        -type f \( -name '*.yaml' -o -name '*.yml' \) 2>/dev/null | sort
}

# The YAML front end, and `compile`: every YAML file as it is.
for target in front yaml_diff scalar_map compile; do
    dir="$here/corpus/$target"
    mkdir -p "$dir"
    yaml_files | while read -r f; do
        cp "$f" "$dir/$(printf '%s' "$f" | sed "s|$root/||; s|/|_|g")"
    done
done

# `compile`: the good examples as one file, with the URLs the trace transcript follows as
# `#trace` comment lines.
{
    for f in "$root"/examples/good/*.yaml; do
        case $f in *.test.yaml) continue ;; esac
        cat "$f"
        printf '\n---\n'
    done
    sed -n 's|^trace -R -f examples/good \([^ ]*\).*|#trace GET \1|p' \
        "$root/compiler/test_data/trace/commands.txt"
    echo '#trace POST https://shop.example.com/api/orders x-beta:true'
} > "$here/corpus/compile/examples-good-traced.yaml"

# `session`: edit scripts (see fuzz_targets/session.rs). Each test data file written whole,
# then edited; and scripts over the pool's documents alone.
dir="$here/corpus/session"
mkdir -p "$dir"
i=0
find "$root/examples" "$root/compiler/test_data/golden" "$root/compiler/test_data/trace" \
    -type f -name '*.yaml' ! -name '*.test.yaml' | sort | while read -r f; do
    i=$((i + 1))
    {
        echo '%% w 0'
        cat "$f"
        printf '%%%% p 1 %d\n' "$((i * 3))"
        printf '%%%% s 0\nprefix: /\nprefix: /zz/\n'
        printf '%%%% a 2 %d\n' "$((i * 5 + 1))"
        printf '%%%% s 0\nweight: \nweight: 7\n'
        printf '%%%% K 0 1\n'
        printf '%%%% d 1\n'
        printf '%%%% o\n'
        printf '%%%% p 3 %d\n' "$((i * 7 + 2))"
    } > "$dir/$(printf '%s' "$f" | sed "s|$root/||; s|/|_|g").script"
done
for k in $(seq 0 6 150); do
    {
        printf '%%%% p 0 %d\n%%%% p 1 %d\n%%%% a 0 %d\n' "$k" "$((k + 1))" "$((k + 2))"
        printf '%%%% s 1\nname: \nname: renamed-\n'
        printf '%%%% P 2 %d\n%%%% k 0 0\n%%%% w 1\n%%%% p 3 %d\n%%%% d 0\n' "$((k + 3))" "$((k + 4))"
    } > "$dir/pool-$k.script"
done

# `admission`: AdmissionReview bodies around every object of the YAML files.
yaml_files | xargs python3 "$here/seed_admission.py" "$here/corpus/admission"

for target in front compile session admission; do
    echo "$target: $(ls "$here/corpus/$target" | wc -l) seed files"
done

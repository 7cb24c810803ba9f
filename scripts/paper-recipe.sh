# The NCF paper's training recipe as the authors' code runs it, shared by scripts/paper-grid.sh
# and scripts/paper-tune.sh (sourced, not run): Adam betas 0.9/0.999, eps 1e-8, 4 exact
# negatives per positive, no dropout, no L2, MLP tower [8f, 4f, 2f, f]. Batch size and learning
# rate are each script's own.
paper_recipe=(--beta1 0.9 --beta2 0.999 --eps 1e-8 --dropout 0 --negatives 4
  --negative-mode exact)

# paper_model MODEL F: sets paper_model_flags to ncf-train's flags for gmf, mlp or neumf at
# predictive factors F; returns 1 for any other MODEL.
paper_model() {
  local layers="$((8 * $2)),$((4 * $2)),$((2 * $2)),$2"
  case $1 in
    gmf) paper_model_flags=(--model gmf --factors "$2") ;;
    mlp) paper_model_flags=(--model mlp --layers "$layers") ;;
    neumf) paper_model_flags=(--model neumf --factors "$2" --layers "$layers") ;;
    *) return 1 ;;
  esac
}

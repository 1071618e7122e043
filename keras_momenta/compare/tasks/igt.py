"""IGT (Arnold et al. 2019): its network experiments (§6.1 and §6.3) as
runner tasks, at full scale and reduced to run offline in minutes.

Every task uses the paper's linearly decreasing step size (§6.1, to 0 at
the end of the run). The entries are the methods each experiment compares:
CIFAR-10 (Fig. 3): SGD, HB, Adam, ITA and HB-ITA; IMDb (§6.1): those and
Adam-ITA; MAML on Mini-ImageNet (Fig. 5 right, and the test accuracies of
§6.3): HB, Adam, HB-ITA and Adam-ITA, swapped in as the meta-optimizer.
The ImageNet ResNet-50 experiment (Fig. 4) is in `tasks/imagenet.py`; the
LQR experiment (Fig. 5 left) is not a network task.

The text we have of the paper has no Appendix A: where the main text does
not give a setting, the choice is ours and says so.
"""

from keras_momenta.compare import igt_data, maml
from keras_momenta.compare.igt_models import bilstm_sentiment, resnet_v1_cifar
from keras_momenta.compare.tasks import Task

CIFAR_OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "ita", "hb_ita")
IMDB_OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "ita", "hb_ita", "adam_ita")
MAML_OPTIMIZERS = ("sgd_momentum", "adam", "hb_ita", "adam_ita")
IGT_OPTIMIZERS = IMDB_OPTIMIZERS

# MAML on Mini-ImageNet: 100K meta-iterations of 4 tasks (§6.3), counted in
# epochs of 1000 meta-iterations (our choice).
MAML_META_BATCH = 4
MAML_EPOCH_EPISODES = 1000 * MAML_META_BATCH

TASKS = [
    Task(
        name="cifar10_resnet56",
        paper="igt",
        stands_for="IGT §6.1, Fig. 3 (ResNet-56 on CIFAR-10)",
        description=(
            "CIFAR-10 through TFDS; ResNet-56 v1 as TF official models (3 stages of 9 basic "
            "blocks, 16/32/64 filters, weight decay 2e-4), their pad-crop-flip augmentation and "
            "per-image standardisation, batch 128 (§6.1), 182 epochs (TF official's), step size "
            "decreasing linearly to 0 (§6.1); the last 10% of the training set validates "
            "(our choice)"
        ),
        load=igt_data.cifar10_official,
        build_model=resnet_v1_cifar,
        epochs=182,
        batch_size=128,
        optimizers=CIFAR_OPTIMIZERS,
        augment=igt_data.augment_cifar10_official,
        schedule="linear",
        data="TFDS cifar10 (downloads, or prepared in --data-dir)",
    ),
    Task(
        name="imdb_bilstm",
        paper="igt",
        stands_for="IGT §6.1, IMDb sentiment analysis (bidirectional LSTM)",
        description=(
            "IMDb reviews through TFDS, the last 100 tokens of each (vocabulary of 20k from the "
            "training examples only); embedding 128, bidirectional LSTM 64, dropout 0.5, sigmoid "
            "(sizes and batch 32: Keras's IMDb BiLSTM example, our choice); 200 epochs and a "
            "linearly decreasing step size (§6.1)"
        ),
        load=igt_data.imdb,
        build_model=bilstm_sentiment,
        epochs=200,
        batch_size=32,
        optimizers=IMDB_OPTIMIZERS,
        loss="binary_crossentropy",
        schedule="linear",
        data="TFDS imdb_reviews (downloads, or prepared in --data-dir)",
    ),
    Task(
        name="miniimagenet_maml",
        paper="igt",
        stands_for="IGT §6.3, Fig. 5 right (MAML on Mini-ImageNet)",
        description=(
            "second-order MAML, 5 ways, 5 adaptation steps, meta-batches of 4 tasks, 100K "
            "meta-iterations (§6.3) as 100 epochs of 1000; 1 support + 1 query image per class "
            "(our reading of the paper's 10 samples), inner step 0.01 and the 4-conv 32-filter "
            "network of Finn et al.; 600 validation and 600 test episodes (our choice); the "
            "entry is the meta-optimizer"
        ),
        load=lambda data_dir=None: maml.miniimagenet(data_dir, train_episodes=MAML_EPOCH_EPISODES),
        build_model=maml.miniimagenet_maml,
        epochs=100,
        batch_size=MAML_META_BATCH,
        optimizers=MAML_OPTIMIZERS,
        schedule="linear",
        evaluation_batch_size=20,
        data=(
            "local files: --data-dir DIR with DIR/" + maml.MINIIMAGENET_FILES["train"]
            + " (and -val, -test): " + maml.MINIIMAGENET_HOW
        ),
    ),
    Task(
        name="digits_resnet8_igt",
        paper="igt",
        stands_for="IGT §6.1, Fig. 3 reduced (CIFAR-10 ResNet-56 → digits ResNet-8)",
        description=(
            "scikit-learn's 8×8 digits, a ResNet-8 v1 of the same design (1 block per stage, "
            "8/16/32 filters; batch-norm momentum 0.9 for the short run), batch 128, linearly "
            "decreasing step size"
        ),
        load=lambda data_dir=None: igt_data.data.digits(data_dir, image=True),
        build_model=lambda: resnet_v1_cifar(
            8, (8, 16, 32), input_shape=(8, 8, 1), bn_momentum=0.9
        ),
        epochs=10,
        batch_size=128,
        optimizers=CIFAR_OPTIMIZERS,
        schedule="linear",
        scale="reduced",
    ),
    Task(
        name="synthetic_sentiment_bilstm",
        paper="igt",
        stands_for="IGT §6.1 reduced (IMDb BiLSTM → synthetic sentiment)",
        description=(
            "synthetic reviews of 20 tokens whose label counts positive vs negative words with "
            "negation (generated offline); embedding 16, bidirectional LSTM 16, batch 32, "
            "linearly decreasing step size"
        ),
        load=igt_data.synthetic_sentiment,
        build_model=lambda: bilstm_sentiment(
            igt_data.SYNTHETIC_VOCABULARY, igt_data.SYNTHETIC_LENGTH, embedding=16, units=16,
            dropout=0.0,
        ),
        epochs=5,
        batch_size=32,
        optimizers=IMDB_OPTIMIZERS,
        loss="binary_crossentropy",
        schedule="linear",
        scale="reduced",
    ),
    Task(
        name="sinusoid_maml",
        paper="igt",
        stands_for="IGT §6.3, Fig. 5 right reduced (MAML on Mini-ImageNet → sinusoid regression)",
        description=(
            "MAML on sinusoid regression as Finn et al. 2017 §5.1 (amplitude 0.1-5, phase 0-π, "
            "x in [-5, 5], K = 10, 2×40 ReLU MLP, one inner step of 0.01, meta-batch 25), "
            "second order; fresh episodes every epoch (2000 per epoch); the entry is the "
            "meta-optimizer"
        ),
        load=maml.sinusoid,
        build_model=maml.sinusoid_maml,
        epochs=10,
        batch_size=25,
        optimizers=MAML_OPTIMIZERS,
        loss="mse",
        metrics=("mse",),
        selection="val_loss",
        augment=maml.sinusoid_augment,
        schedule="linear",
        scale="reduced",
    ),
]
